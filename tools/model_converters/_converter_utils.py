"""What every converter guarantees (docs/en/user_guides/finetune.md#converting-checkpoints),
written once; the key maps live in :mod:`deepmim_mm.checkpoint.keys`."""
import argparse
import os.path as osp
import pickle

from deepmim_mm.checkpoint import (NotACheckpointError, atomic_write_bytes, fold_keys,
                                   read_state_dict, torch_bytes)
from deepmim_mm.checkpoint.loading import CHECKPOINT_FORMATS, checkpoint_format

#: Each converter: the formats (keys of ``CHECKPOINT_FORMATS``) it reads, and the one it writes.
CONVERTERS = {
    'deepmim_to_timm.py': (('plugin', 'mff'), 'timm'),
    'timm_to_deepmim.py': (('timm', ), 'plugin'),
    'official_to_deepmim.py': (('official', 'timm'), 'plugin'),
}
#: The formats whose encoder already has the names of a converter's output.
_NAMED_AS = {'timm': ('timm', 'official'), 'plugin': ('plugin', 'mff', 'encoder')}

#: The near-empty rule, shown in every converter's ``--help``.
SAFETY_RULE = ('Nothing is written (exit code 1) when DST is SRC (also through a symbolic or '
               'hard link), when DST exists (unless --force), or when the result would hold no '
               "tensor or fewer than half of the input's encoder tensors, --allow-drop or not.")


def refuse_overwriting_input(src, dst):
    """Exit with an error when ``dst`` is ``src`` itself (same path, symlink or hard link)."""
    if osp.exists(src) and osp.exists(dst) and osp.samefile(src, dst):
        raise SystemExit(f'error: the output {dst} is the input {src}; a converter never '
                         'overwrites its input: choose another output path')


def read_or_exit(read, *args):
    """``read(*args)``; a missing or unreadable input ends the tool with one ``error:`` line."""
    try:
        return read(*args)
    except (FileNotFoundError, NotACheckpointError, pickle.UnpicklingError) as e:
        raise SystemExit(f'error: {e}') from None


def check_format(state, src, script):
    """Exit naming what ``src`` is and what to do with it when its keys are those of a format the
    converter ``script`` does not read."""
    fmt = checkpoint_format(state)
    reads, writes = CONVERTERS[script]
    if fmt is None or fmt in reads:
        return
    other = [s for s, (r, w) in CONVERTERS.items() if fmt in r and w == writes]
    if other:
        fix = f'convert it with tools/model_converters/{other[0]} instead'
    elif fmt in _NAMED_AS[writes]:
        fix = f'its encoder already has the {writes} names {script} writes: use it as it is'
    else:
        fix = 'no converter here reads it' + (
            ' (a CLIP teacher is read as it is: model.target_generator.checkpoint)'
            if fmt == 'clip' else '')
    raise SystemExit(f'error: src: {src} is {CHECKPOINT_FORMATS[fmt]}: {fix}; nothing written')


def convert(argv, doc, mapping, script, is_encoder, add_arguments=None):
    """Parse the common arguments, check DST, read SRC and its format (:data:`CONVERTERS`), map
    it (``mapping`` returns ``(state, {dropped key: reason})``) and apply :data:`SAFETY_RULE`;
    returns the arguments and state."""
    parser = argparse.ArgumentParser(description=doc.split('\n\n')[0], epilog=SAFETY_RULE)
    parser.add_argument('src', help='input checkpoint')
    parser.add_argument('dst', help='output checkpoint (.pth; .safetensors writes safetensors)')
    parser.add_argument('--allow-drop', action='store_true',
                        help='write the output even when some keys could not be mapped (they '
                        'are listed and left out); by default that is an error (exit code 1)')
    parser.add_argument('--force', action='store_true',
                        help='replace DST when it exists (never when it is SRC)')
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    refuse_overwriting_input(args.src, args.dst)
    if osp.isdir(args.dst) or args.dst.endswith(('/', osp.sep)):
        raise SystemExit(f'error: dst: {args.dst} is a directory; give the output file path, '
                         f'e.g. {osp.join(args.dst, osp.basename(args.src))}')
    if osp.exists(args.dst) and not args.force:
        raise SystemExit(f'error: dst: {args.dst} exists; pass --force to replace it (or choose '
                         'another output path)')
    state = read_or_exit(read_state_dict, args.src, 'src')
    check_format(state, args.src, script)
    state, dropped = mapping(state)
    by_reason = {}
    for key, reason in dropped.items():
        by_reason.setdefault(reason, []).append(key)
    for reason, keys in by_reason.items():
        print(f'dropped ({reason}, {len(keys)} keys): ' + ', '.join(fold_keys(keys)))
    unmapped = len(by_reason.get('unmapped', []))
    if unmapped and not args.allow_drop:
        raise SystemExit(f'error: {unmapped} keys of {args.src} could not be mapped (see above); '
                         'nothing written. Pass --allow-drop to write the output without them.')
    encoder = sum(map(is_encoder, state))
    expected = ' or '.join(CHECKPOINT_FORMATS[f] for f in CONVERTERS[script][0])
    if encoder == 0 or encoder < unmapped:
        raise SystemExit(f'error: {args.src}: {encoder} of its {encoder + unmapped} encoder '
                         f'tensors converted (at least one and half are required; expected '
                         f'{expected}); nothing written')
    return args, state


def save(state, dst, layout='state_dict', meta=None):
    """Save ``state`` atomically under ``layout`` (``None``: bare), with ``meta`` if given; a
    ``.safetensors`` DST holds the flat dict (``meta`` as its metadata)."""
    state = {k: v.contiguous() for k, v in state.items()}
    if dst.endswith('.safetensors'):
        if layout == 'model':
            raise SystemExit(f'error: {dst}: safetensors files hold a flat dict of tensors; '
                             f'the {layout!r} layout needs a .pth output')
        from safetensors.torch import save as safetensors_bytes
        data = safetensors_bytes(state, metadata={k: str(v) for k, v in (meta or {}).items()})
    else:
        obj = state if layout is None else {layout: state}
        data = torch_bytes(obj if meta is None else dict(obj, meta=meta))
    atomic_write_bytes(dst, data)
    print(f'wrote {len(state)} tensors to {dst}')
