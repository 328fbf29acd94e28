"""Make a training checkpoint publishable: weights and plain metadata only, named by its hash
(docs/en/user_guides/finetune.md#publishing-a-checkpoint)."""
import argparse
import hashlib
import numbers
import os.path as osp
from collections import OrderedDict

import torch

from deepmim_mm.checkpoint import atomic_write_bytes, read_checkpoint, torch_bytes

from _converter_utils import read_or_exit, refuse_overwriting_input

_DROP = object()


def plain(value, path, dropped):
    """``value`` with every non-plain leaf removed (its ``path`` appended to ``dropped``)."""
    if isinstance(value, (str, bool, type(None))):
        return value
    if isinstance(value, numbers.Real):  # also numpy scalars
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)):  # e.g. a numpy integer: not weights-only
                dropped.append(f'{path}[{k!r}]')
                continue
            sub = plain(v, f'{path}.{k}', dropped)
            if sub is not _DROP:
                out[k] = sub
        return out
    if isinstance(value, (list, tuple)):
        items = [plain(v, f'{path}[{i}]', dropped) for i, v in enumerate(value)]
        return [v for v in items if v is not _DROP]
    dropped.append(f'{path} ({type(value).__name__})')
    return _DROP


def publish(ckpt, no_ema=False):
    """Returns ``(published checkpoint, [what was dropped])``."""
    dropped = [k for k in ckpt if k not in ('state_dict', 'meta', 'ema_state_dict')]
    state = OrderedDict((k, v) for k, v in ckpt['state_dict'].items() if torch.is_tensor(v))
    dropped += [f'state_dict.{k}' for k in ckpt['state_dict'] if k not in state]
    if 'ema_state_dict' in ckpt:
        if no_ema:  # EMAHook swaps: ema_state_dict holds the raw weights ('module.' prefix)
            for k, v in ckpt['ema_state_dict'].items():
                if k.startswith('module.') and k[len('module.'):] in state:
                    state[k[len('module.'):]] = v
        dropped.append('ema_state_dict' + (' (its raw weights published: --no-ema)' if no_ema
                                           else ' (the averaged weights are published)'))
    meta = plain(ckpt.get('meta') or {}, 'meta', dropped)
    return OrderedDict(state_dict=state, meta=meta if isinstance(meta, dict) else {}), dropped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('in_file', help='training checkpoint (mmengine; or a bare state dict)')
    parser.add_argument('out_file', help='output name; -<sha256[:8]> is inserted before .pth')
    parser.add_argument('--no-ema', action='store_true',
                        help='publish the raw weights of an EMAHook checkpoint, not the averaged')
    args = parser.parse_args(argv)
    ckpt = read_or_exit(read_checkpoint, args.in_file, 'in_file')
    if 'state_dict' not in ckpt:  # a bare state dict (e.g. converted from another repository)
        ckpt = dict(state_dict=ckpt)
    out, dropped = publish(ckpt, args.no_ema)
    if not out['state_dict']:
        raise SystemExit(f'error: {args.in_file} holds no weights (state_dict has no tensors); '
                         'nothing written')
    data = torch_bytes(out)
    sha = hashlib.sha256(data).hexdigest()
    final = f'{args.out_file.removesuffix(".pth")}-{sha[:8]}.pth'
    refuse_overwriting_input(args.in_file, final)
    atomic_write_bytes(final, data)
    if dropped:
        print('dropped: ' + ', '.join(dropped))
    num = sum(v.numel() for v in out['state_dict'].values())
    print(f'{len(out["state_dict"])} tensors ({num / 1e6:.2f} M values), '
          f'{osp.getsize(args.in_file) / 2**20:.1f} MiB -> {len(data) / 2**20:.1f} MiB')
    print(f'sha256 {sha}')
    print(f'wrote {final}')
    return final


if __name__ == '__main__':
    main()
