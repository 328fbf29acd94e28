"""A load_from / resume checkpoint that does not fit the model is an error, not a warning."""
import re

from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import find_latest_checkpoint

from ...checkpoint import NotACheckpointError, check_state, fit_error, state_dict_of


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """Adds over mmengine's ``load_from`` / ``resume`` (``strict=False``, mismatches only logged):
    before any weight is copied, :func:`~deepmim_mm.checkpoint.check_state` compares the
    checkpoint with the model, and a mismatch is a ``ValueError`` naming the file.

    Encoder (``encoder_prefix``) keys must match both ways and every shape must match. Outside
    the encoder the checkpoint may lack keys (an MAE checkpoint in a DeepMIM model: the extra
    decoders start from scratch) or hold keys the model lacks, unless ``strict`` (what
    ``tools/test.py`` uses: an evaluation must not run with parts at their random
    initialisation).
    """

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
