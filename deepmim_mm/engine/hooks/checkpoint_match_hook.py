"""A load_from / resume checkpoint that does not fit the model is an error, not a warning."""
import re

from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import find_latest_checkpoint

from ...checkpoint import NotACheckpointError, check_state, fit_error, state_dict_of


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """Makes mmengine's ``load_from`` / ``resume`` mismatches (only logged upstream) a
    ``ValueError`` naming the file, from :func:`~deepmim_mm.checkpoint.check_state`: encoder keys
    and every shape must match; outside ``encoder_prefix`` keys may be missing or extra (an MAE
    checkpoint in a DeepMIM model) unless ``strict`` (``tools/test.py``)."""

    priority = 'VERY_HIGH'

    def __init__(self, encoder_prefix: str = 'backbone.', strict: bool = False) -> None:
        self.encoder_prefix = encoder_prefix
        self.strict = strict

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        field, fname = 'load_from', runner.cfg.get('load_from')
        if runner.cfg.get('resume'):
            field, fname = 'resume', fname or find_latest_checkpoint(runner.work_dir)
        fname = fname or 'the checkpoint'  # a Runner built without a config
        if not isinstance(checkpoint, dict):
            raise NotACheckpointError(f'{field}: not a checkpoint: {fname} (it holds a '
                                      f'{type(checkpoint).__name__}, not a dict)')
        model = runner.model
        if is_model_wrapper(model) or isinstance(model, BaseTTAModel):  # as mmengine unwraps
            model = model.module
        outside = f'(?!{re.escape(self.encoder_prefix)}).*'
        _, errors = check_state(model.state_dict(), state_dict_of(checkpoint), fname,
                                allow_new=() if self.strict else (outside, ),
                                ignore=((outside, 'not in the model'), ))
        if errors:
            raise fit_error(fname, type(model).__name__, errors, field)
