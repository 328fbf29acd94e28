"""One clear line when a resumed run resumes nothing, or has nothing left to train."""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop


@HOOKS.register_module()
class ResumeCheckHook(Hook):
    """Warns, before a resumed run trains, when it found no checkpoint (``resume`` in the config)
    or has nothing left to train (any Runner); mmengine trains from scratch, or trains nothing,
    without a word."""

    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        # Checkpoints are saved after an iteration: a resume left at iteration 0 loaded nothing.
        if runner.iter == 0 and runner.cfg.get('resume'):  # (not kept by a Runner from arguments)
            print_log(f'resume: {runner.work_dir} holds no checkpoint to resume from (no '
                      'last_checkpoint file): training starts from scratch', logger='current',
                      level=30)
        elif runner.iter >= runner.max_iters:
            epochs = (f' (epoch {runner.epoch} of {runner.max_epochs})'
                      if isinstance(runner.train_loop, EpochBasedTrainLoop) else '')
            print_log(f'resume: the checkpoint is at iteration {runner.iter} of '
                      f'{runner.max_iters}{epochs}: nothing is left to train. Raise '
                      'train_cfg.max_epochs / max_iters to continue this run, or give it another '
                      'work_dir for a new one.', logger='current', level=30)
