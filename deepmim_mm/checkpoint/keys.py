"""Checkpoint key names and the key maps between this plugin, timm, the official code and CLIP;
every map returns what it could not map."""
import itertools
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

#: MFF's fusion layers and weights (relative to ``backbone.``; arXiv 2308.00261).
MFF_FUSION_KEYS = r'proj_layers\..*|proj_weights'

#: Encoder keys (relative to ``backbone.``) that only pretraining uses, with the reason a
#: downstream backbone that lacks them drops them: ``(regex, reason)``.
PRETRAIN_ONLY_KEYS = (
    (MFF_FUSION_KEYS, 'MFF fusion, pretraining only'),
    (r'mask_token', 'mask token, pretraining only'),
    (r'cls_token', 'class token; the backbone uses none'),
    (r'ln1\..*', 'final norm of the pretraining encoder; the backbone has none'),
)

#: Model keys that dense-task backbones add at fine-tune time (relative position tables and
#: their index buffers, layer scale): new by design, initialised by the backbone.
DENSE_NEW_KEYS = (r'.*relative_position_bias_table', r'.*relative_position_index',
                  r'.*rel_pos_[hw]', r'.*gamma_[12]')


def fold_keys(keys: Iterable[str]) -> List[str]:
    """Fold the first varying numeric component of keys alike into ranges, losslessly:
    ``layers.{0-3,5}.ln1.weight``."""
    groups: Dict[str, List[List[int]]] = OrderedDict()  # key with '{}' for its numbers -> them
    for key in keys:
        parts = key.split('.')
        pattern = '.'.join('{}' if p.isdigit() else p for p in parts)
        groups.setdefault(pattern, []).append([int(p) for p in parts if p.isdigit()])
    out = []
    for pattern, numbers in groups.items():
        if not numbers[0]:
            out.append(pattern)
            continue
        pos = next((i for i in range(len(numbers[0])) if len({n[i] for n in numbers}) > 1), 0)
        by_rest: Dict[tuple, List[int]] = OrderedDict()
        for nums in numbers:
            by_rest.setdefault(tuple(nums[:pos] + nums[pos + 1:]), []).append(nums[pos])
        for rest, folded in by_rest.items():
            values = list(rest)
            values.insert(pos, '{' + _ranges(folded) + '}' if len(folded) > 1 else folded[0])
            out.append(pattern.format(*values))
    return out


def _ranges(values: List[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``'0-2,5,7-8'``."""
    runs = itertools.groupby(enumerate(sorted(set(values))), lambda iv: iv[1] - iv[0])
    spans = [[v for _, v in run] for _, run in runs]
    return ','.join(str(s[0]) if len(s) == 1 else f'{s[0]}-{s[-1]}' for s in spans)


def matches(key: str, patterns: Sequence[str]) -> bool:
    """Whether ``key`` fully matches one of the regexes ``patterns``."""
    return any(re.fullmatch(p, key) for p in patterns)


def pretrain_only_reason(key: str, rules: Sequence[Tuple[str, str]] = PRETRAIN_ONLY_KEYS
                         ) -> Optional[str]:
    """The reason of the first ``(regex, reason)`` rule ``key`` matches, or ``None``."""
    return next((why for pattern, why in rules if re.fullmatch(pattern, key)), None)


#: (plugin / mmpretrain key, timm VisionTransformer key); ``{i}`` a block index,
#: ``{p}`` weight|bias.
VIT_KEY_PAIRS = (
    ('backbone.cls_token', 'cls_token'),
    ('backbone.pos_embed', 'pos_embed'),
    ('backbone.patch_embed.projection.{p}', 'patch_embed.proj.{p}'),
    ('backbone.layers.{i}.ln1.{p}', 'blocks.{i}.norm1.{p}'),
    ('backbone.layers.{i}.attn.qkv.{p}', 'blocks.{i}.attn.qkv.{p}'),
    ('backbone.layers.{i}.attn.proj.{p}', 'blocks.{i}.attn.proj.{p}'),
    ('backbone.layers.{i}.ln2.{p}', 'blocks.{i}.norm2.{p}'),
    ('backbone.layers.{i}.ffn.layers.0.0.{p}', 'blocks.{i}.mlp.fc1.{p}'),
    ('backbone.layers.{i}.ffn.layers.1.{p}', 'blocks.{i}.mlp.fc2.{p}'),
    ('backbone.ln1.{p}', 'norm.{p}'),  # final norm
    ('backbone.ln2.{p}', 'fc_norm.{p}'),  # norm after global average pooling (fine-tuned models)
    ('head.fc.{p}', 'head.{p}'),  # the classifier of a fine-tuned model
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
    """``{i}`` matches a block index, ``{p}`` weight|bias."""
    return re.compile(re.escape(template).replace(r'\{i\}', r'(?P<i>\d+)').replace(
        r'\{p\}', r'(?P<p>weight|bias)'))


def _map_keys(state: Dict[str, torch.Tensor], pairs, reverse: bool = False,
              dst_prefix: str = '') -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """``state`` renamed by ``pairs`` (right to left if ``reverse``), and the unmatched keys."""
    compiled = [(_compile(b if reverse else a), a if reverse else b) for a, b in pairs]
    out, unmapped = OrderedDict(), []
    for key, value in state.items():
        for regex, template in compiled:
            m = regex.fullmatch(key)
            if m:
                out[dst_prefix + template.format(**m.groupdict())] = value
                break
        else:
            unmapped.append(key)
    return out, unmapped


def plugin_to_timm(
        state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """A plugin / mmpretrain state dict (``backbone.``, ``head.fc.``) -> timm ``VisionTransformer``
    keys, and ``{dropped key: 'pretraining only' | 'unmapped'}``."""
    out, unmapped = _map_keys(state, VIT_KEY_PAIRS)
    dropped = OrderedDict()
    for key in unmapped:
        part, _, rest = key.partition('.')
        pretraining = (pretrain_only_reason(rest) if part == 'backbone' else
                       part in ('neck', 'target_generator', 'teacher'))
        dropped[key] = 'pretraining only' if pretraining else 'unmapped'
    return out, dropped


def timm_to_plugin(
        state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """A timm ``VisionTransformer`` state dict -> this plugin's (``backbone.``, ``head.fc.``),
    and ``{dropped key: 'unmapped'}``."""
    out, unmapped = _map_keys(state, VIT_KEY_PAIRS, reverse=True)
    return out, OrderedDict((k, 'unmapped') for k in unmapped)


#: A decoder key of the official code: MAE's (``decoder_embed.weight``) or DeepMIM's, numbered
#: 1..L, shallowest first (``decoder_embed3.weight``); ``decoder_pos_embed`` is shared.
_DECODER_RE = re.compile(
    r'(decoder_embed|mask_token|decoder_blocks|decoder_norm|decoder_pred)(\d*)(\..*)?$')


def official_mae_to_plugin(
        state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """An official MAE or DeepMIM ``model`` dict -> this plugin's pretraining keys (the last
    decoder under ``neck.``, the others under ``neck.aux_decoders.{k}.``, shallowest first, each
    with the shared ``decoder_pos_embed``), and ``{dropped key: 'unmapped'}``."""
    levels: Dict[int, Dict[str, torch.Tensor]] = {}
    shared, encoder = {}, OrderedDict()
    for key, value in state.items():
        m = _DECODER_RE.match(key)
        if key == 'decoder_pos_embed':
            shared[key] = value
        elif m:
            levels.setdefault(int(m.group(2) or 0), {})[m.group(1) + (m.group(3) or '')] = value
        else:
            encoder[key] = value
    out, unmapped = _map_keys(encoder, VIT_KEY_PAIRS, reverse=True)
    dropped = OrderedDict((k, 'unmapped') for k in unmapped + ([] if levels else list(shared)))
    for n, num in enumerate(sorted(levels)):
        dst = 'neck.' if n == len(levels) - 1 else f'neck.aux_decoders.{n}.'
        mapped, miss = _map_keys(dict(levels[num], **shared), DECODER_KEY_PAIRS, reverse=True,
                                 dst_prefix=dst)
        out.update(mapped)
        dropped.update((f'{k} (decoder {num})' if num else k, 'unmapped') for k in miss)
    return out, dropped


#: (OpenAI / open_clip ``visual.*`` key, prefix stripped; CLIPTeacher's key), as mmpretrain's
#: ``tools/model_converters/openai-clip_to_mmpretrain-clip.py`` renames them.
CLIP_VISUAL_KEY_PAIRS = (
    ('conv1.weight', 'vit.patch_embed.projection.weight'),
    ('class_embedding', 'vit.cls_token'),
    ('positional_embedding', 'vit.pos_embed'),
    ('ln_pre.{p}', 'vit.pre_norm.{p}'),
    ('transformer.resblocks.{i}.ln_1.{p}', 'vit.layers.{i}.ln1.{p}'),
    ('transformer.resblocks.{i}.attn.in_proj_weight', 'vit.layers.{i}.attn.qkv.weight'),
    ('transformer.resblocks.{i}.attn.in_proj_bias', 'vit.layers.{i}.attn.qkv.bias'),
    ('transformer.resblocks.{i}.attn.out_proj.{p}', 'vit.layers.{i}.attn.proj.{p}'),
    ('transformer.resblocks.{i}.ln_2.{p}', 'vit.layers.{i}.ln2.{p}'),
    ('transformer.resblocks.{i}.mlp.c_fc.{p}', 'vit.layers.{i}.ffn.layers.0.0.{p}'),
    ('transformer.resblocks.{i}.mlp.c_proj.{p}', 'vit.layers.{i}.ffn.layers.1.{p}'),
    ('ln_post.{p}', 'vit.ln1.{p}'),  # the final norm
    ('proj', 'proj'),
)


def clip_visual_to_mmpretrain(
        state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """A CLIP image tower's ``visual.*`` tensors (prefix stripped) -> CLIPTeacher's keys, the
    embeddings reshaped to mmpretrain's ``(1, ...)`` layout; and the unmapped keys."""
    out, unmapped = _map_keys(state, CLIP_VISUAL_KEY_PAIRS)
    for key in ('vit.cls_token', 'vit.pos_embed'):  # (D,) and (N, D) -> (1, N, D)
        if key in out:
            out[key] = out[key].reshape(1, -1, out[key].shape[-1])
    return out, unmapped
