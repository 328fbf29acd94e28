"""Reusable checkpoint helpers: read a checkpoint, load a pretrained encoder with a checked report,
and map ViT keys between mmpretrain, timm and the official MAE / DeepMIM code.

Pure torch + mmengine: nothing here imports mmpretrain, mmseg or mmdet, so any part of the plugin
(and the converters in ``tools/model_converters/``) can use it.

Key conventions
---------------
- *Plugin pretraining checkpoint*: mmengine checkpoint whose ``state_dict`` holds the encoder under
  ``backbone.`` with mmpretrain ``VisionTransformer``/``MAEViT`` names (``cls_token``,
  ``pos_embed``, ``patch_embed.projection``, ``layers.{i}.{ln1,attn.qkv,attn.proj,ln2,
  ffn.layers.0.0,ffn.layers.1}``, final norm ``ln1``), MFF's pretraining-only fusion
  (``proj_layers.{k}``, ``proj_weights``), and the decoders under ``neck.`` (the last level's
  decoder with ``MAEPretrainDecoder`` names, auxiliary levels under ``neck.aux_decoders.{k}.``).
- *timm*: ``timm.models.vision_transformer.VisionTransformer`` names (``patch_embed.proj``,
  ``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``, ``fc_norm``, ``head``).
  The official MAE and DeepMIM code (built on timm) uses these names for the encoder.

Every mapping function returns ``(mapped, unmapped)``: nothing is dropped silently; callers
report ``unmapped`` (and decide whether it is an error).
"""
import os.path as osp
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = [
    'read_state_dict', 'fold_keys', 'EncoderLoadReport', 'load_pretrained_encoder',
    'upstream_init_then_pretrained_cfg',
    'extract_prefix', 'mmpretrain_vit_to_timm', 'timm_vit_to_mmpretrain', 'plugin_to_timm',
    'timm_to_plugin', 'official_mae_to_plugin', 'PRETRAIN_ONLY_ENCODER_KEYS'
]

#: Encoder keys (relative to ``backbone.``) that only pretraining uses: MFF's fusion layers and
#: weights (arXiv 2308.00261). Downstream loaders drop them.
PRETRAIN_ONLY_ENCODER_KEYS = (r'proj_layers\..*', r'proj_weights')


# ------------------------------------------------------------------------------------------------
# Reading and reporting
# ------------------------------------------------------------------------------------------------
def read_state_dict(path: str, field_name: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The state dict of a checkpoint file: its ``state_dict`` (mmengine), ``model`` (official
    MAE / DeepMIM / DeiT), ``module``, or the dict itself (a bare state dict).

    Raises ``FileNotFoundError`` naming ``field_name`` when the file is missing and ``ValueError``
    when it does not hold a dict of tensors.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f'{field_name} must be the path of a checkpoint file, got {path!r}')
    if '://' not in path and not osp.isfile(path):
        # A config field (``model.backbone.init_cfg.checkpoint``) says how to set it.
        hint = (f' (set it with --cfg-options {field_name}=/path/to/epoch_N.pth)'
                if field_name.startswith('model.') else '')
        raise FileNotFoundError(f'{field_name}: checkpoint not found: {path!r}{hint}')
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(path, map_location='cpu')
    if not isinstance(ckpt, dict):
        raise ValueError(f'{field_name}: {path!r} holds a {type(ckpt).__name__}, not a '
                         'checkpoint dict')
    for key in ('state_dict', 'model', 'module'):
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    state = OrderedDict((k, v) for k, v in ckpt.items() if isinstance(v, torch.Tensor))
    if not state:
        raise ValueError(f'{field_name}: {path!r} holds no tensors (keys: '
                         f'{sorted(ckpt)[:10]})')
    return state


def fold_keys(keys: Iterable[str]) -> List[str]:
    """Fold numeric path components into ranges for reports: ``layers.{0-3,5}.ln1.weight``.

    Keys with the same non-numeric parts are grouped; in each group the first numeric component
    that varies is folded. Every key is represented: expanding the ranges gives back exactly
    ``keys``.
    """
    groups: 'OrderedDict[Tuple[str, ...], List[Tuple[int, ...]]]' = OrderedDict()
    for key in keys:
        parts = key.split('.')
        nums = tuple(int(p) for p in parts if p.isdigit())
        pattern = tuple('{}' if p.isdigit() else p for p in parts)
        groups.setdefault(pattern, []).append(nums)
    out = []
    for pattern, nums_list in groups.items():
        if not nums_list[0]:
            out.append('.'.join(pattern))
            continue
        varying = [i for i in range(len(nums_list[0]))
                   if len({nums[i] for nums in nums_list}) > 1]
        pos = varying[0] if varying else 0
        by_rest: 'OrderedDict[Tuple[int, ...], List[int]]' = OrderedDict()
        for nums in nums_list:
            by_rest.setdefault(nums[:pos] + nums[pos + 1:], []).append(nums[pos])
        for rest, folded in by_rest.items():
            values = [str(v) for v in rest]
            values.insert(pos, '{' + _ranges(folded) + '}' if len(folded) > 1
                          else str(folded[0]))
            it = iter(values)
            out.append('.'.join(next(it) if p == '{}' else p for p in pattern))
    return out


def _ranges(values: List[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``'0-2,5,7-8'``."""
    values = sorted(set(values))
    spans, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        spans.append(str(start) if start == prev else f'{start}-{prev}')
        if v is not None:
            start = prev = v
    return ','.join(spans)


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(re.fullmatch(p, key) for p in patterns)


def extract_prefix(state: Dict[str, torch.Tensor],
                   prefix: Optional[str]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """The keys under ``prefix`` with the prefix stripped, and the other keys (dropped).

    ``prefix=None`` (or ``''``) keeps everything.
    """
    if not prefix:
        return OrderedDict(state), []
    kept = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
    return kept, [k for k in state if not k.startswith(prefix)]


@dataclass
class EncoderLoadReport:
    """What :func:`load_pretrained_encoder` did.

    Attributes:
        checkpoint: the file read.
        loaded: model keys set from the checkpoint.
        resized: keys whose checkpoint tensor was resized on load (position embedding):
            ``key -> (checkpoint shape, model shape)``.
        new: model keys the checkpoint does not have and that are allowed to be new (e.g. the
            fine-tuning ``ln2`` norm of global average pooling); they keep their initialisation.
        dropped: checkpoint keys not loaded, with the reason (``key -> reason``).
    """
    checkpoint: str
    loaded: List[str] = field(default_factory=list)
    resized: Dict[str, Tuple[tuple, tuple]] = field(default_factory=dict)
    new: List[str] = field(default_factory=list)
    dropped: Dict[str, str] = field(default_factory=dict)

    def format(self) -> str:
        lines = [f'Pretrained encoder from {self.checkpoint}: {len(self.loaded)} keys loaded, '
                 f'{len(self.new)} new, {len(self.dropped)} dropped.']
        for key, (old, new) in self.resized.items():
            lines.append(f'  resized {key}: {tuple(old)} -> {tuple(new)}')
        if self.new:
            lines.append('  new (initialised by the model): ' + ', '.join(fold_keys(self.new)))
        by_reason: Dict[str, List[str]] = OrderedDict()
        for key, reason in self.dropped.items():
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            lines.append(f'  dropped ({reason}): ' + ', '.join(fold_keys(keys)))
        lines.append('  loaded: ' + ', '.join(fold_keys(self.loaded)))
        return '\n'.join(lines)


def upstream_init_then_pretrained_cfg(module: nn.Module, upstream_init_weights) -> Optional[dict]:
    """Run the upstream ``init_weights`` with a ``Pretrained`` ``init_cfg`` held back.

    Every weight is first initialised the upstream way (new modules such as relative position
    tables, layer scale or ``ln2`` keep that initialisation); the caller then loads the encoder
    from the returned ``Pretrained`` config with its own checks. Returns ``None`` (after running
    the upstream ``init_weights`` as it is) when ``init_cfg`` is not ``Pretrained``.
    """
    cfg = module.init_cfg
    if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
        upstream_init_weights()
        return None
    module.init_cfg = None
    try:
        upstream_init_weights()
    finally:
        module.init_cfg = cfg
    return cfg


def load_pretrained_encoder(module: nn.Module,
                            checkpoint: str,
                            prefix: Optional[str] = 'backbone.',
                            allow_new: Sequence[str] = (),
                            ignore: Sequence[str] = PRETRAIN_ONLY_ENCODER_KEYS,
                            resizable: Sequence[str] = ('pos_embed', ),
                            field_name: str = 'init_cfg.checkpoint') -> EncoderLoadReport:
    """Load the encoder weights of ``checkpoint`` into ``module`` and check that all of them load.

    Args:
        module: the encoder (its ``state_dict`` keys are what must be covered).
        checkpoint: checkpoint file (see :func:`read_state_dict`).
        prefix: the encoder's prefix in the checkpoint (``'backbone.'`` for this plugin's and
            mmpretrain's checkpoints); ``None`` reads a bare encoder state dict. Keys outside the
            prefix (decoders, heads, teachers, data preprocessor) are dropped and reported.
        allow_new: regexes of module keys that may be absent from the checkpoint (they keep the
            module's own initialisation and are reported as new).
        ignore: regexes of checkpoint encoder keys the module does not have and that may be
            dropped (default: MFF's pretraining-only fusion keys).
        resizable: module keys whose shape may differ (the module's load hook resizes them, as
            mmpretrain's ``VisionTransformer`` does for ``pos_embed``); their last dimension must
            still agree.
        field_name: the config field named in error messages.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: the checkpoint has no key under ``prefix``; a module key outside
            ``allow_new`` is missing from it; it has encoder keys the module does not know
            (outside ``ignore``: a different architecture); or a tensor's shape differs.

    Returns:
        The :class:`EncoderLoadReport`.
    """
    state = read_state_dict(checkpoint, field_name)
    encoder, others = extract_prefix(state, prefix)
    if not encoder:
        prefixes = sorted({k.split('.', 1)[0] + '.' for k in state})
        raise ValueError(
            f'{field_name}: {checkpoint!r} has no encoder weights: no key starts with '
            f'{prefix!r} (its top-level prefixes: {prefixes}). Expected a pretraining checkpoint '
            f'of this plugin or mmpretrain (encoder under {prefix!r}); convert official MAE / '
            'DeepMIM or timm checkpoints with tools/model_converters/ first.')
    report = EncoderLoadReport(checkpoint=checkpoint)
    for k in others:
        report.dropped[k] = f'outside {prefix!r}'
    target = module.state_dict()
    missing = [k for k in target if k not in encoder and not _matches(k, allow_new)]
    unknown = [k for k in encoder if k not in target and not _matches(k, ignore)]
    errors = []
    if missing:
        errors.append('encoder weights missing from the checkpoint: '
                      + ', '.join(fold_keys(missing)))
    if unknown:
        errors.append('checkpoint encoder keys the model does not have (a different '
                      'architecture?): ' + ', '.join(fold_keys(unknown)))
    for k, v in encoder.items():
        if k not in target:
            continue
        want = target[k].shape
        if v.shape == want:
            continue
        if k in resizable and v.dim() == len(want) and v.shape[-1] == want[-1]:
            report.resized[k] = (tuple(v.shape), tuple(want))
            continue
        errors.append(f'{k}: checkpoint shape {tuple(v.shape)} != model shape {tuple(want)}')
    if errors:
        raise ValueError(f'{field_name}: cannot initialise {type(module).__name__} from '
                         f'{checkpoint!r} (prefix {prefix!r}): ' + '; '.join(errors))
    for k in encoder:
        if k not in target:
            report.dropped[prefix + k if prefix else k] = 'not used by the model'
    report.new = [k for k in target if k not in encoder]
    report.loaded = [k for k in target if k in encoder]
    result = module.load_state_dict(
        OrderedDict((k, v) for k, v in encoder.items() if k in target), strict=False)
    still_missing = [k for k in result.missing_keys if k in report.loaded]
    if still_missing or result.unexpected_keys:  # a load hook renamed or dropped something
        raise ValueError(f'{field_name}: {type(module).__name__} did not accept '
                         f'{fold_keys(still_missing + list(result.unexpected_keys))}')
    return report


# ------------------------------------------------------------------------------------------------
# Key mapping between mmpretrain, timm and the official MAE / DeepMIM code
# ------------------------------------------------------------------------------------------------
#: (mmpretrain VisionTransformer key, timm VisionTransformer key); ``{i}`` a block index,
#: ``{p}`` weight|bias.
VIT_KEY_PAIRS = (
    ('cls_token', 'cls_token'),
    ('pos_embed', 'pos_embed'),
    ('patch_embed.projection.{p}', 'patch_embed.proj.{p}'),
    ('layers.{i}.ln1.{p}', 'blocks.{i}.norm1.{p}'),
    ('layers.{i}.attn.qkv.{p}', 'blocks.{i}.attn.qkv.{p}'),
    ('layers.{i}.attn.proj.{p}', 'blocks.{i}.attn.proj.{p}'),
    ('layers.{i}.ln2.{p}', 'blocks.{i}.norm2.{p}'),
    ('layers.{i}.ffn.layers.0.0.{p}', 'blocks.{i}.mlp.fc1.{p}'),
    ('layers.{i}.ffn.layers.1.{p}', 'blocks.{i}.mlp.fc2.{p}'),
    ('ln1.{p}', 'norm.{p}'),  # final norm
    ('ln2.{p}', 'fc_norm.{p}'),  # norm after global average pooling (fine-tuned models)
)

#: (mmpretrain MAEPretrainDecoder key, official MAE decoder key).
DECODER_KEY_PAIRS = (
    ('decoder_embed.{p}', 'decoder_embed.{p}'),
    ('mask_token', 'mask_token'),
    ('decoder_pos_embed', 'decoder_pos_embed'),
    ('decoder_blocks.{i}.ln1.{p}', 'decoder_blocks.{i}.norm1.{p}'),
    ('decoder_blocks.{i}.attn.qkv.{p}', 'decoder_blocks.{i}.attn.qkv.{p}'),
    ('decoder_blocks.{i}.attn.proj.{p}', 'decoder_blocks.{i}.attn.proj.{p}'),
    ('decoder_blocks.{i}.ln2.{p}', 'decoder_blocks.{i}.norm2.{p}'),
    ('decoder_blocks.{i}.ffn.layers.0.0.{p}', 'decoder_blocks.{i}.mlp.fc1.{p}'),
    ('decoder_blocks.{i}.ffn.layers.1.{p}', 'decoder_blocks.{i}.mlp.fc2.{p}'),
    ('ln1.{p}', 'decoder_norm.{p}'),
    ('decoder_pred.{p}', 'decoder_pred.{p}'),
)


def _compile(template: str) -> 're.Pattern':
    pattern = re.escape(template).replace(r'\{i\}', r'(?P<i>\d+)').replace(
        r'\{p\}', r'(?P<p>weight|bias)')
    return re.compile(pattern)


def _map_keys(state: Dict[str, torch.Tensor], pairs, reverse: bool = False, src_prefix: str = '',
              dst_prefix: str = '') -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Rename the keys of ``state`` under ``src_prefix`` with ``pairs`` (left -> right, or right
    -> left when ``reverse``); returns the renamed keys (under ``dst_prefix``) and the keys under
    ``src_prefix`` that no pair matches."""
    compiled = [(_compile(b if reverse else a), b if not reverse else a) for a, b in pairs]
    out, unmapped = OrderedDict(), []
    for key, value in state.items():
        if not key.startswith(src_prefix):
            continue
        rel = key[len(src_prefix):]
        for regex, template in compiled:
            m = regex.fullmatch(rel)
            if m:
                out[dst_prefix + template.format(**m.groupdict())] = value
                break
        else:
            unmapped.append(key)
    return out, unmapped


def mmpretrain_vit_to_timm(state: Dict[str, torch.Tensor]):
    """mmpretrain ``VisionTransformer`` encoder keys (no prefix) -> timm keys."""
    return _map_keys(state, VIT_KEY_PAIRS)


def timm_vit_to_mmpretrain(state: Dict[str, torch.Tensor]):
    """timm ``VisionTransformer`` encoder keys -> mmpretrain keys (no prefix)."""
    return _map_keys(state, VIT_KEY_PAIRS, reverse=True)


def plugin_to_timm(
        state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """A plugin (or mmpretrain) checkpoint's state dict -> a timm ``VisionTransformer`` state dict.

    Maps the encoder (``backbone.``) and a ``LinearClsHead`` (``head.fc.`` -> ``head.``). Returns
    ``(timm_state, dropped)`` where ``dropped`` maps every key not converted to the reason:
    decoders, teachers and MFF fusion are *pretraining only*; anything else is *unmapped* (the
    caller decides whether that is an error).
    """
    out, unmapped = _map_keys(state, VIT_KEY_PAIRS, src_prefix='backbone.')
    head, _ = _map_keys(state, (('{p}', '{p}'), ), src_prefix='head.fc.', dst_prefix='head.')
    out.update(head)
    dropped = OrderedDict()
    for key in unmapped:
        rel = key[len('backbone.'):]
        dropped[key] = 'pretraining only' if _matches(rel, PRETRAIN_ONLY_ENCODER_KEYS) \
            else 'unmapped'
    for key in state:
        if key.startswith('backbone.') or key.startswith('head.fc.'):
            continue
        top = key.split('.', 1)[0]
        dropped[key] = 'pretraining only' if top in ('neck', 'target_generator', 'teacher') \
            else 'unmapped'
    return out, dropped


def timm_to_plugin(
        state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """A timm ``VisionTransformer`` state dict -> this plugin's keys (``backbone.``, and a
    classifier ``head.`` -> ``head.fc.``). Returns ``(state, dropped)``; every key not converted
    is ``'unmapped'``."""
    out, unmapped = _map_keys(state, VIT_KEY_PAIRS, reverse=True, dst_prefix='backbone.')
    dropped = OrderedDict()
    for key in unmapped:
        m = re.fullmatch(r'head\.(weight|bias)', key)
        if m:
            out['head.fc.' + m.group(1)] = state[key]
        else:
            dropped[key] = 'unmapped'
    return out, dropped


#: Official DeepMIM (``OliverRensu/DeepMIM``, ``models_mae.py``) numbers its decoders 1..L
#: (shallowest first) with these suffixed names; ``decoder_pos_embed`` is shared.
_DEEPMIM_DECODER_RE = re.compile(
    r'(decoder_embed|mask_token|decoder_blocks|decoder_norm|decoder_pred)(\d+)(\..*)?$')


def official_mae_to_plugin(
        state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """An official MAE or DeepMIM checkpoint's ``model`` dict -> this plugin's pretraining keys.

    - encoder (timm names) -> ``backbone.`` (mmpretrain names);
    - MAE's decoder (``decoder_*``, ``mask_token``) -> ``neck.`` (``MAEPretrainDecoder`` names);
    - DeepMIM's numbered decoders ``decoder_embed{k}``, ``mask_token{k}``, ``decoder_blocks{k}``,
      ``decoder_norm{k}``, ``decoder_pred{k}`` (k = 1..L, shallowest first): the highest ``k``
      (the last block's decoder) -> ``neck.``, the others -> ``neck.aux_decoders.{k-1}.``; the
      shared ``decoder_pos_embed`` is copied to every decoder.

    Returns ``(state, dropped)``; keys no rule covers are ``'unmapped'``.
    """
    encoder_keys = [k for k in state if not (k.startswith('decoder') or k.startswith('mask_token'))]
    out, unmapped = _map_keys(OrderedDict((k, state[k]) for k in encoder_keys), VIT_KEY_PAIRS,
                              reverse=True, dst_prefix='backbone.')
    dropped = OrderedDict((k, 'unmapped') for k in unmapped)
    decoder = OrderedDict((k, v) for k, v in state.items() if k not in encoder_keys)
    numbered: Dict[int, Dict[str, torch.Tensor]] = {}
    plain = OrderedDict()
    for key, value in decoder.items():
        m = _DEEPMIM_DECODER_RE.match(key)
        if m:
            numbered.setdefault(int(m.group(2)), OrderedDict())[
                m.group(1) + (m.group(3) or '')] = value
        else:
            plain[key] = value
    if numbered:
        levels = sorted(numbered)
        shared = {k: v for k, v in plain.items() if k == 'decoder_pos_embed'}
        for k in shared:
            plain.pop(k)
        for n, num in enumerate(levels):
            dst = 'neck.' if n == len(levels) - 1 else f'neck.aux_decoders.{n}.'
            mapped, miss = _map_keys(dict(numbered[num], **shared), DECODER_KEY_PAIRS,
                                     reverse=True, dst_prefix=dst)
            out.update(mapped)
            for key in miss:
                dropped[f'{key} (decoder {num})'] = 'unmapped'
    mapped, miss = _map_keys(plain, DECODER_KEY_PAIRS, reverse=True, dst_prefix='neck.')
    out.update(mapped)
    for key in miss:
        dropped[key] = 'unmapped'
    return out, dropped
