"""A load_from / resume checkpoint of another architecture is an error, not a warning."""
import re

from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS

from ...checkpoint import NotACheckpointError, check_state, state_dict_of


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """A checkpoint of another architecture is an error, not a warning.

    Adds over mmengine's ``load_from`` / ``resume`` (which load with ``strict=False`` and only
    log mismatches): before the weights are copied, the checkpoint's ``state_dict`` is compared
    with the model's. A ``ValueError`` names the file and the keys when

    - a parameter has a different shape (another width, patch size or image size),
    - the checkpoint shares no encoder (``encoder_prefix``) parameter with the model (a
      checkpoint of another model, or a fine-tune checkpoint that lacks the encoder weights),
    - encoder parameters are missing from it, or it has encoder parameters the model lacks
      (another depth, MFF fusion layers in a model without them), or
    - with ``strict=True`` (what ``tools/test.py`` uses: an evaluation must not run with
      parts left at their random initialisation), any parameter of the model is missing.

    Without ``strict``, missing parameters outside the encoder stay allowed, as in mmengine
    (e.g. an MAE checkpoint loaded into a DeepMIM model, whose extra decoders start from
    scratch), and so are checkpoint keys outside the encoder that the model lacks.
    """

    priority = 'VERY_HIGH'

    def __init__(self, encoder_prefix: str = 'backbone.', max_listed: int = 8,
                 strict: bool = False) -> None:
        self.encoder_prefix = encoder_prefix
        self.max_listed = max_listed
        self.strict = strict

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
        model = runner.model
        # What mmengine's load_state_dict unwraps too (DDP/FSDP wrappers, TTA models).
        if is_model_wrapper(model) or isinstance(model, BaseTTAModel):
            model = model.module
        own = model.state_dict()
        p = self.encoder_prefix
        own_enc = [k for k in own if k.startswith(p)]
        n = self.max_listed
        if own_enc and not any(k in state for k in own_enc):
            listed = sorted(state)[:n]
            raise ValueError(f'{fname} holds no encoder weights for {type(model).__name__}: '
                             f'none of its {len(state)} keys matches the model\'s '
                             f'{len(own_enc)} {p}* parameters (e.g. {own_enc[0]}); its keys '
                             f'start {listed}. Expected a pretraining checkpoint with '
                             f'{p}* keys')
        outside = f'(?!{re.escape(p)}).*'  # any key outside the encoder
        _, errors = check_state(own, state, fname, allow_new=() if self.strict else (outside, ),
                                ignore=((outside, 'not in the model'), ))
        if errors:
            raise ValueError(f'{fname} does not fit {type(model).__name__} (a checkpoint of '
                             'another architecture, depth, patch size or image size?): '
                             + '; '.join(errors[:n]) + (' ...' if len(errors) > n else ''))
