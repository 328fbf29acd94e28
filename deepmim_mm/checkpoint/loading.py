"""Loading weights into a module with every key accounted for: one checked path and one report.

:func:`check_state` compares a state dict with a module's; :func:`load_checked_state` raises on
what the caller's policy does not allow, loads and returns a :class:`LoadReport`;
:func:`load_pretrained_encoder` reads a file first. The policy is explicit and strict by default:

- ``allow_new``: regexes of module keys the checkpoint may lack (they keep their
  initialisation): none for fine-tuning and the teachers; relative position tables and layer
  scale for the dense tasks (:data:`~deepmim_mm.checkpoint.keys.DENSE_NEW_KEYS`);
- ``ignore``: ``(regex, reason)`` pairs of checkpoint keys the module does not have that may be
  dropped: by default the pretraining-only encoder keys
  (:data:`~deepmim_mm.checkpoint.keys.PRETRAIN_ONLY_KEYS`); none for a teacher;
- ``resizable``: module keys whose checkpoint tensor may differ in its token count because the
  module's own load hook resizes it (mmpretrain's ``VisionTransformer`` for ``pos_embed``);
- ``prepare``: a function applied to the encoder state dict before the checks (the backbone's
  own upstream resizing, e.g. mmseg's ``MAE.resize_abs_pos_embed``).

Anything else (a missing weight, an unknown key, another shape) is a ``ValueError`` naming the
keys, the file and the config field.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .io import read_state_dict
from .keys import PRETRAIN_ONLY_KEYS, extract_prefix, fold_keys, matches


@dataclass
class LoadReport:
    """What :func:`load_checked_state` did.

    Attributes:
        checkpoint: the file (or other source) read.
        loaded: module keys set from the checkpoint.
        resized: keys whose checkpoint tensor was resized on load (position embedding):
            ``key -> (checkpoint shape, model shape)``.
        new: module keys the checkpoint does not have (allowed by the policy); they keep the
            module's initialisation.
        dropped: checkpoint keys not loaded, with the reason (``key -> reason``).
        what: what was loaded, for the report's first line.
    """
    checkpoint: str
    what: str = 'pretrained encoder'
    loaded: List[str] = field(default_factory=list)
    resized: Dict[str, Tuple[tuple, tuple]] = field(default_factory=dict)
    new: List[str] = field(default_factory=list)
    dropped: Dict[str, str] = field(default_factory=dict)

    def format(self) -> str:
        lines = [f'Loaded {self.what} from {self.checkpoint}: {len(self.loaded)} keys loaded, '
                 f'{len(self.new)} new, {len(self.dropped)} dropped.']
        for key, (old, new) in self.resized.items():
            lines.append(f'  resized {key}: {tuple(old)} -> {tuple(new)}')
        if self.new:
            lines.append('  new (not in the checkpoint, initialised by the model): '
                         + ', '.join(fold_keys(self.new)))
        by_reason: Dict[str, List[str]] = OrderedDict()
        for key, reason in self.dropped.items():
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            lines.append(f'  dropped ({reason}): ' + ', '.join(fold_keys(keys)))
        lines.append('  loaded: ' + ', '.join(fold_keys(self.loaded)))
        return '\n'.join(lines)


def _reason(key: str, ignore: Sequence[Tuple[str, str]]) -> Optional[str]:
    return next((why for pattern, why in ignore if matches(key, [pattern])), None)


def check_state(target: Dict[str, torch.Tensor],
                state: Dict[str, torch.Tensor],
                source: str,
                allow_new: Sequence[str] = (),
                ignore: Sequence[Tuple[str, str]] = PRETRAIN_ONLY_KEYS,
                resizable: Sequence[str] = (),
                name: Callable[[str], str] = str) -> Tuple[LoadReport, List[str]]:
    """Compare ``state`` with a module's ``target`` state dict.

    Returns the report of what loading would do and the list of problems the policy does not
    allow (empty when ``state`` fits). ``name`` maps a key to how the checkpoint spells it (for
    messages and ``dropped``).
    """
    report = LoadReport(checkpoint=source)
    errors = []
    missing = [name(k) for k in target if k not in state and not matches(k, allow_new)]
    if missing:
        errors.append('weights missing from the checkpoint: ' + ', '.join(fold_keys(missing)))
    unknown = []
    for k in state:
        if k in target:
            continue
        why = _reason(k, ignore)
        if why is None:
            unknown.append(name(k))
        else:
            report.dropped[name(k)] = why
    if unknown:
        errors.append('checkpoint keys the model does not have (a different architecture?): '
                      + ', '.join(fold_keys(unknown)))
    for k, v in state.items():
        if k not in target or not hasattr(v, 'shape'):
            continue
        want = target[k].shape
        if v.shape == want:
            continue
        if k in resizable and v.dim() == len(want) and v.shape[-1] == want[-1]:
            report.resized[k] = (tuple(v.shape), tuple(want))
            continue
        errors.append(f'{name(k)}: checkpoint {tuple(v.shape)} vs model {tuple(want)}')
    non_finite = [name(k) for k, v in state.items()
                  if k in target and torch.is_tensor(v) and v.is_floating_point()
                  and not bool(torch.isfinite(v).all())]
    if non_finite:  # e.g. saved after a divergence: every output would be NaN
        errors.append('non-finite values (NaN or inf) in: ' + ', '.join(fold_keys(non_finite)))
    report.loaded = [k for k in target if k in state]
    report.new = [k for k in target if k not in state]
    return report, errors


def load_checked_state(module: nn.Module,
                       state: Dict[str, torch.Tensor],
                       source: str,
                       prefix: Optional[str] = 'backbone.',
                       allow_new: Sequence[str] = (),
                       ignore: Sequence[Tuple[str, str]] = PRETRAIN_ONLY_KEYS,
                       resizable: Sequence[str] = (),
                       prepare: Optional[Callable[[Dict[str, torch.Tensor]],
                                                  Dict[str, torch.Tensor]]] = None,
                       field_name: str = '') -> LoadReport:
    """Load the keys of ``state`` under ``prefix`` into ``module`` under the given policy.

    Args:
        module: what to load into (every key of its ``state_dict`` must be covered).
        state: a state dict (see :func:`~deepmim_mm.checkpoint.io.read_state_dict`).
        source: the file it came from, for the report and errors.
        prefix: the module's prefix in ``state`` (``'backbone.'`` for an encoder in a
            pretraining checkpoint); ``None`` or ``''`` uses every key. Keys outside it are
            dropped and reported.
        allow_new, ignore, resizable, prepare: the policy (see the module docstring).
        field_name: the config field or argument named in errors.

    Raises:
        ValueError: no key under ``prefix``, or what the policy does not allow.
    """
    where = f'{field_name}: ' if field_name else ''
    encoder, others = extract_prefix(state, prefix)
    if not encoder:
        prefixes = sorted({k.split('.', 1)[0] + '.' for k in state})
        raise ValueError(
            f'{where}{source!r} has no encoder weights: no key starts with {prefix!r} (the model '
            f'is {type(module).__name__}; its top-level prefixes: {prefixes}). Expected a '
            'pretraining checkpoint '
            f'of this plugin or mmpretrain (encoder under {prefix!r}); convert official MAE / '
            'DeepMIM or timm checkpoints with tools/model_converters/ first, or set the '
            "init_cfg's prefix='' for a bare encoder state dict.")
    shapes = {k: tuple(v.shape) for k, v in encoder.items()}
    if prepare is not None:
        encoder = prepare(OrderedDict(encoder))
    report, errors = check_state(module.state_dict(), encoder, source, allow_new, ignore,
                                 resizable, name=lambda k: (prefix or '') + k)
    for k, v in encoder.items():  # what ``prepare`` resized
        if k in shapes and tuple(v.shape) != shapes[k]:
            report.resized[k] = (shapes[k], tuple(v.shape))
    if errors:
        raise ValueError(f'{where}cannot initialise {type(module).__name__} from {source!r} '
                         f'(prefix {prefix!r}): ' + '; '.join(errors))
    for k in others:
        report.dropped[k] = f'outside {prefix!r}'
    result = module.load_state_dict(
        OrderedDict((k, v) for k, v in encoder.items() if k in report.loaded), strict=False)
    not_taken = [k for k in result.missing_keys if k in report.loaded]
    if not_taken or result.unexpected_keys:  # a load hook renamed or dropped something
        raise ValueError(f'{where}{type(module).__name__} did not accept '
                         f'{fold_keys(not_taken + list(result.unexpected_keys))}')
    return report


def load_pretrained_encoder(module: nn.Module, checkpoint: str, prefix: Optional[str] = 'backbone.',
                            field_name: str = 'init_cfg.checkpoint', **policy) -> LoadReport:
    """Read ``checkpoint`` and :func:`load_checked_state` its ``prefix`` keys into ``module``.

    Raises ``FileNotFoundError`` for a missing file, :class:`NotACheckpointError` for a file
    that holds no checkpoint, ``ValueError`` for one that does not fit.
    """
    state = read_state_dict(checkpoint, field_name)
    return load_checked_state(module, state, checkpoint, prefix=prefix, field_name=field_name,
                              **policy)


class PretrainedEncoderMixin:
    """``init_weights`` for a backbone whose ``init_cfg=dict(type='Pretrained', ...)`` must load
    through :func:`load_pretrained_encoder` with the backbone's policy.

    Every weight is first initialised the upstream way with the ``Pretrained`` config held back
    (so modules new at fine-tune time, e.g. relative position tables, keep that
    initialisation), then the encoder is loaded with :meth:`encoder_load_policy`; the report is
    logged and kept as ``self.pretrain_report``. Any other ``init_cfg`` is upstream's.
    Subclasses put this mixin first among their bases and override :meth:`encoder_load_policy`.
    """

    def encoder_load_policy(self) -> dict:
        """Keyword arguments of :func:`load_checked_state` (``allow_new``, ``ignore``, ...)."""
        return {}

    def init_weights(self):
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            return super().init_weights()
        # The arguments of mmengine's PretrainedInit (the plugin's loader reads to the CPU, so
        # map_location is accepted and has no effect); a typo would otherwise be ignored.
        import inspect

        from mmengine.model.weight_init import PretrainedInit

        from ..engine.config_checks import closest_name
        accepted = list(inspect.signature(PretrainedInit).parameters)
        unknown = sorted(set(cfg) - {'type', *accepted})
        if unknown:
            close = closest_name(unknown[0], accepted)
            raise ValueError(f'model.backbone.init_cfg: unknown argument(s) {unknown} of '
                             "type='Pretrained'" + (f' (did you mean {close!r}?)' if close else '')
                             + f'; accepted: {", ".join(accepted)}')
        self.init_cfg = None
        try:
            super().init_weights()
        finally:
            self.init_cfg = cfg
        from mmengine.logging import print_log
        self.pretrain_report = load_pretrained_encoder(
            self, cfg.get('checkpoint'), prefix=cfg.get('prefix', 'backbone.'),
            field_name='model.backbone.init_cfg.checkpoint', **self.encoder_load_policy())
        print_log(self.pretrain_report.format(), logger='current')
