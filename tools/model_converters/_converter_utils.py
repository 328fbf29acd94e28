"""Shared command-line plumbing of the converters: load, report dropped keys, save.

The key mappings themselves live in :mod:`deepmim_mm.checkpoint`.
"""
import os
import os.path as osp
import sys

import torch

from deepmim_mm.checkpoint import fold_keys, read_state_dict


def add_common_args(parser):
    parser.add_argument('src', help='input checkpoint')
    parser.add_argument('dst', help='output checkpoint (.pth; .safetensors writes safetensors)')
    parser.add_argument('--allow-drop', action='store_true',
                        help='write the output even when some keys could not be mapped (they '
                        'are listed and left out); by default that is an error (exit code 1)')


def load(path):
    return read_state_dict(path, field_name='src')


def report_and_check(dropped, allow_drop, what):
    """Print every dropped key with its reason; unmapped keys are an error unless allowed."""
    by_reason = {}
    for key, reason in dropped.items():
        by_reason.setdefault(reason, []).append(key)
    for reason, keys in by_reason.items():
        print(f'dropped ({reason}, {len(keys)} keys): ' + ', '.join(fold_keys(keys)))
    unmapped = by_reason.get('unmapped', [])
    if unmapped and not allow_drop:
        print(f'error: {len(unmapped)} keys of the {what} checkpoint could not be mapped (see '
              'above); nothing written. Pass --allow-drop to write the output without them.',
              file=sys.stderr)
        sys.exit(1)


def save(state, dst, meta=None, wrap=True):
    """Save ``state``: wrapped as an mmengine checkpoint (``state_dict`` + ``meta``) or bare."""
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    state = {k: v.contiguous() for k, v in state.items()}
    if dst.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file(state, dst, metadata={k: str(v) for k, v in (meta or {}).items()})
    elif wrap:
        torch.save({'state_dict': state, 'meta': dict(meta or {})}, dst)
    else:
        torch.save(state, dst)
    print(f'wrote {len(state)} tensors to {dst}')
