"""A load_from / resume checkpoint of another architecture is an error, not a warning."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ...checkpoint import NotACheckpointError, check_state, state_dict_of


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """A checkpoint of another architecture is an error, not a warning.

    Adds over mmengine's ``load_from`` / ``resume`` (which load with ``strict=False`` and only
    log mismatches): before the weights are copied, the checkpoint's ``state_dict`` is compared
    with the model's. A ``ValueError`` names the file and the keys when

    - a parameter has a different shape (another width, patch size or image size), or
    - the checkpoint shares no encoder (``backbone.``) parameter with the model (a checkpoint of
      another model, or a fine-tune checkpoint that lacks the encoder weights).

    Missing auxiliary keys (e.g. an MAE checkpoint loaded into a DeepMIM model, whose extra
    decoders start from scratch) remain allowed, as in mmengine.
    """

    priority = 'VERY_HIGH'

    def __init__(self, encoder_prefix: str = 'backbone.', max_listed: int = 8) -> None:
        self.encoder_prefix = encoder_prefix
        self.max_listed = max_listed

    @staticmethod
    def _filename(runner) -> str:
        name = getattr(runner, '_load_from', None)
        if not name and getattr(runner, '_resume', False):
            from mmengine.runner.checkpoint import find_latest_checkpoint
            name = find_latest_checkpoint(runner.work_dir)
        return str(name or 'the checkpoint')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        fname = self._filename(runner)
        if not isinstance(checkpoint, dict):
            raise NotACheckpointError(f'not a checkpoint: {fname} (it holds a '
                                      f'{type(checkpoint).__name__}, not a dict)')
        state = state_dict_of(checkpoint)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        own = model.state_dict()
        # Missing keys stay allowed (mmengine's strict=False), unknown ones are mmengine's
        # warning; another shape is an error.
        _, errors = check_state(own, state, fname, allow_new=('.*', ),
                                ignore=(('.*', 'not in the model'), ))
        n = self.max_listed
        if errors:
            raise ValueError(f'{fname} does not fit {type(model).__name__} (a checkpoint of '
                             'another architecture, patch size or image size?): '
                             + '; '.join(errors[:n]) + (' ...' if len(errors) > n else ''))
        p = self.encoder_prefix
        own_enc = [k for k in own if k.startswith(p)]
        if own_enc and not any(k in state for k in own_enc):
            listed = sorted(state)[:n]
            raise ValueError(f'{fname} holds no encoder weights for {type(model).__name__}: '
                             f'none of its {len(state)} keys matches the model\'s '
                             f'{len(own_enc)} {p}* parameters (e.g. {own_enc[0]}); its keys '
                             f'start {listed}. Expected a pretraining checkpoint with '
                             f'{p}* keys')
