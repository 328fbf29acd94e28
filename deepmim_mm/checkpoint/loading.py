"""The one checkpoint-fit check (:func:`check_state`), its message and the checked load."""
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .io import _field, read_state_dict
from .keys import MFF_FUSION_KEYS, PRETRAIN_ONLY_KEYS, fold_keys, matches, pretrain_only_reason


@dataclass
class LoadReport:
    """What :func:`load_checked_state` did, per key (``resized``: ``key -> (checkpoint shape,
    model shape)``; ``dropped``: ``key -> reason``)."""
    checkpoint: str
    loaded: List[str] = field(default_factory=list)
    resized: Dict[str, Tuple[tuple, tuple]] = field(default_factory=dict)
    new: List[str] = field(default_factory=list)
    dropped: Dict[str, str] = field(default_factory=dict)

    def format(self) -> str:
        lines = [f'Loaded pretrained encoder from {self.checkpoint}: {len(self.loaded)} keys '
                 f'loaded, {len(self.new)} new, {len(self.dropped)} dropped.']
        lines += [f'  resized {k}: {tuple(a)} -> {tuple(b)}' for k, (a, b) in self.resized.items()]
        if self.new:
            lines.append('  new (not in the checkpoint, initialised by the model): '
                         + ', '.join(fold_keys(self.new)))
        by_reason: Dict[str, List[str]] = OrderedDict()
        for key, reason in self.dropped.items():
            by_reason.setdefault(reason, []).append(key)
        lines += [f'  dropped ({why}): ' + ', '.join(fold_keys(keys))
                  for why, keys in by_reason.items()]
        lines.append('  loaded: ' + ', '.join(fold_keys(self.loaded)))
        return '\n'.join(lines)


def summarize(keys: Sequence[str], universe: Sequence[str], limit: int = 6) -> str:
    """``keys`` as the shortest dotted prefixes that hold only them among ``universe``, numbers
    folded (``neck.aux_decoders.{0-2}.*``), at most ``limit`` items, then their count."""
    def prefixes(key):
        parts = key.split('.')
        return ['.'.join(parts[:n]) for n in range(1, len(parts) + 1)]

    have = Counter(p for k in keys for p in prefixes(k))
    total = Counter(p for k in universe for p in prefixes(k))
    labels = {}  # (an ordered set)
    for key in keys:
        head = next((p for p in prefixes(key) if have[p] == total[p]), key)
        labels[head if head == key else head + '.*'] = None
    folded = fold_keys(labels)
    more = f', ... {len(folded) - limit} more' if len(folded) > limit else ''
    return f'{", ".join(folded[:limit])}{more} ({len(keys)} tensors)'


def _blocks(keys) -> Dict[str, set]:
    """``{container: block indices}`` from the first numbered component of each key."""
    out: Dict[str, set] = {}
    for key in keys:
        m = re.match(r'(.*?)\.(\d+)\.', key)
        if m:
            out.setdefault(m.group(1), set()).add(int(m.group(2)))
    return out


#: What :func:`checkpoint_format` tells apart, as a message names it.
CHECKPOINT_FORMATS = {
    'clip': 'a CLIP checkpoint (visual.* image tower)',
    'official': 'an official MAE / DeepMIM pretraining checkpoint (timm names, decoder_* keys)',
    'timm': 'a timm ViT state dict (blocks.N, patch_embed.proj)',
    'mff': "an MFF checkpoint of this plugin / mmpretrain (fusion layers under 'backbone.')",
    'plugin': "a checkpoint of this plugin / mmpretrain (encoder under 'backbone.')",
    'encoder': "a bare encoder state dict (layers.N, no 'backbone.' prefix)",
}


def checkpoint_format(state) -> Optional[str]:
    """The key of :data:`CHECKPOINT_FORMATS` that ``state``'s key names match, or ``None``."""
    def has(*starts):
        return any(k.startswith(starts) for k in state)

    backbone = [k[len('backbone.'):] for k in state if k.startswith('backbone.')]
    if has('visual.', 'text_projection', 'logit_scale', 'class_embedding'):
        return 'clip'
    if has('blocks.', 'patch_embed.proj.'):
        return 'official' if has('decoder_') else 'timm'
    if any(matches(k, [MFF_FUSION_KEYS]) for k in backbone):
        return 'mff'
    if backbone:
        return 'plugin'
    return 'encoder' if has('layers.', 'patch_embed.projection.') else None


def describe_keys(state) -> str:
    """What a checkpoint holds, for a message: its top-level key prefixes and its format."""
    fmt = checkpoint_format(state)
    what = CHECKPOINT_FORMATS.get(fmt, 'a checkpoint of another model or format')
    if fmt in ('timm', 'official'):
        what += ': convert it with tools/model_converters/ first'
    elif fmt == 'encoder':
        what += ": read it with prefix=''"
    under = ', '.join(sorted({k.split('.', 1)[0] + '.' for k in state})[:8])
    return f'its keys are under {under} ({what})'


_NON_FINITE = 'non-finite values (NaN or inf) in: '


def _causes(target, state, missing, unknown, shapes) -> List[str]:
    """The likely reasons ``state`` does not fit ``target``, most specific first."""
    parts = {k.split('.', 1)[0] for k in state}
    if not set(target) & set(state):
        return ['no key in common: ' + describe_keys(state)]
    causes = []
    absent = sorted({k.split('.', 1)[0] for k in missing} - parts)
    if 'head' in absent and 'neck' in parts:
        causes.append("a pretraining checkpoint where a fine-tuned model is expected (no 'head.')")
    elif 'neck' in absent:
        causes.append('an encoder-only checkpoint (fine-tuned or converted) where a pretraining '
                      "checkpoint with decoders is expected (no 'neck.')")
    elif absent:
        causes.append(f'it holds no {", ".join(p + "." for p in absent)} weights; '
                      + describe_keys(state))
    theirs, ours = _blocks(state), _blocks(target)
    causes += [f'another depth ({c}: {len(theirs[c])} blocks in the checkpoint, '
               f'{len(ours[c])} in the model)'
               for c in ours if c in theirs and len(ours[c]) != len(theirs[c])]
    wider = [(k, a, b) for k, a, b in shapes if a[-1] != b[-1]]
    if wider:
        k, a, b = wider[0]
        causes.append(f'another width ({k}: {a[-1]} channels in the checkpoint, {b[-1]} in '
                      'the model)')
    elif shapes:
        causes.append('another patch or image size, or another architecture')
    if unknown and all(matches(k.rsplit('backbone.', 1)[-1], [MFF_FUSION_KEYS]) for k in unknown):
        causes.append('an MFF checkpoint (fusion layers) for a model that fuses nothing')
    return causes or ['another architecture']


def check_state(target: Dict[str, torch.Tensor],
                state: Dict[str, torch.Tensor],
                source: str,
                allow_new: Sequence[str] = (),
                ignore: Sequence[Tuple[str, str]] = PRETRAIN_ONLY_KEYS,
                resizable: Sequence[str] = (),
                name: Callable[[str], str] = str) -> Tuple[LoadReport, List[str]]:
    """Whether ``state`` fits a module's ``target`` state dict: the :class:`LoadReport` of
    what loading would do and the problems, cause first (empty when it fits).

    Args:
        allow_new: regexes of module keys the checkpoint may lack (they keep their init).
        ignore: ``(regex, reason)`` pairs of checkpoint keys the module lacks, dropped.
        resizable: module keys whose token count the module's own load hook resizes.
        name: how the checkpoint spells a key (for the messages and ``dropped``).
    """
    report = LoadReport(checkpoint=source)
    missing = [k for k in target if k not in state and not matches(k, allow_new)]
    extra = {k: pretrain_only_reason(k, ignore) for k in state if k not in target}
    unknown = [k for k, why in extra.items() if why is None]
    report.dropped = {name(k): why for k, why in extra.items() if why is not None}
    shapes = []
    for k, v in state.items():
        want = tuple(target[k].shape) if k in target else None
        if want is None or tuple(v.shape) == want:
            continue
        if k in resizable and v.dim() == len(want) and v.shape[-1] == want[-1]:
            report.resized[k] = (tuple(v.shape), want)
        else:
            shapes.append((name(k), tuple(v.shape), want))
    non_finite = [name(k) for k, v in state.items() if k in target and v.is_floating_point()
                  and not bool(torch.isfinite(v).all())]
    report.loaded = [k for k in target if k in state]
    report.new = [k for k in target if k not in state]
    errors = []
    if non_finite:  # e.g. saved after a divergence: every output would be NaN
        errors.append(_NON_FINITE + ', '.join(fold_keys(non_finite)))
    if missing or unknown or shapes:
        errors += _causes(target, state, missing, unknown, shapes)
    if missing:
        errors.append('weights missing from the checkpoint: '
                      + summarize([name(k) for k in missing], [name(k) for k in target]))
    if unknown:
        errors.append('checkpoint keys the model does not have: '
                      + summarize([name(k) for k in unknown], [name(k) for k in state]))
    if shapes:
        more = f' and {len(shapes) - 3} more' if len(shapes) > 3 else ''
        errors.append(f'{len(shapes)} tensors of another shape: ' + '; '.join(
            f'{k}: checkpoint {a} vs model {b}' for k, a, b in shapes[:3]) + more)
    return report, errors


def fit_error(source: str, model: str, errors: Sequence[str], field_name: str = '',
              prefix: Optional[str] = None) -> ValueError:
    """The one message of a checkpoint that does not fit: field, file, module, the problems of
    :func:`check_state`; non-finite weights lead (a fit would not fix them)."""
    where = _field(field_name)
    misfit = f'does not fit {model}' + (f' (keys under {prefix!r})' if prefix else '')
    if errors and errors[0].startswith(_NON_FINITE):
        rest = f'; it also {misfit}: ' + '; '.join(errors[1:]) if errors[1:] else ''
        return ValueError(f'{where}{source} holds {errors[0]} (saved after a divergence? take an '
                          f'earlier checkpoint){rest}')
    return ValueError(f'{where}{source} {misfit}: ' + '; '.join(errors))


def load_checked_state(module: nn.Module,
                       state: Dict[str, torch.Tensor],
                       source: str,
                       prefix: Optional[str] = 'backbone.',
                       prepare: Optional[Callable[[Dict], Dict]] = None,
                       field_name: str = '',
                       **policy) -> LoadReport:
    """Load the keys of ``state`` under ``prefix`` (``None`` or ``''``: every key) into
    ``module`` under the :func:`check_state` ``policy`` (``allow_new``, ``ignore``,
    ``resizable``), ``prepare`` applied first (e.g. mmseg's ``MAE.resize_abs_pos_embed``); raises
    :func:`fit_error` when it does not fit."""
    prefix = prefix or ''
    encoder = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
    if not encoder:
        raise fit_error(source, type(module).__name__, [
            f'it holds no {prefix!r} weights; {describe_keys(state)}'], field_name, prefix)
    shapes = {k: tuple(v.shape) for k, v in encoder.items()}
    if prepare is not None:
        encoder = prepare(OrderedDict(encoder))
    report, errors = check_state(module.state_dict(), encoder, source, name=lambda k: prefix + k,
                                 **policy)
    if errors:
        raise fit_error(source, type(module).__name__, errors, field_name, prefix)
    for k, v in encoder.items():  # what ``prepare`` resized
        if k in shapes and tuple(v.shape) != shapes[k]:
            report.resized[k] = (shapes[k], tuple(v.shape))
    report.dropped.update((k, f'outside {prefix!r}') for k in state if not k.startswith(prefix))
    module.load_state_dict(
        OrderedDict((k, v) for k, v in encoder.items() if k in report.loaded), strict=False)
    return report


def load_pretrained_encoder(module: nn.Module, checkpoint: str, prefix: Optional[str] = 'backbone.',
                            field_name: str = 'init_cfg.checkpoint', **policy) -> LoadReport:
    """Read ``checkpoint`` (:func:`~.io.read_state_dict`) and :func:`load_checked_state` it."""
    state = read_state_dict(checkpoint, field_name)
    return load_checked_state(module, state, checkpoint, prefix=prefix, field_name=field_name,
                              **policy)


class PretrainedEncoderMixin:
    """``init_weights`` that initialises the upstream way, then loads
    ``init_cfg=dict(type='Pretrained', ...)`` through :func:`load_pretrained_encoder` with
    :meth:`encoder_load_policy`, keeping the report as ``self.pretrain_report``. Put it first
    among the bases."""

    def encoder_load_policy(self) -> dict:
        """Keyword arguments of :func:`load_checked_state` (``allow_new``, ``ignore``, ...)."""
        return {}

    def init_weights(self):
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            return super().init_weights()
        from mmengine.logging import print_log
        from mmengine.registry import WEIGHT_INITIALIZERS
        WEIGHT_INITIALIZERS.build(cfg)  # mmengine's own check of the arguments
        self.init_cfg = None
        try:
            super().init_weights()
        finally:
            self.init_cfg = cfg
        self.pretrain_report = load_pretrained_encoder(
            self, cfg.get('checkpoint'), prefix=cfg.get('prefix', 'backbone.'),
            field_name='model.backbone.init_cfg.checkpoint', **self.encoder_load_policy())
        print_log(self.pretrain_report.format(), logger='current')
