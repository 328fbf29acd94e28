"""Bytes a training step keeps for backward, per config, with and without activation checkpointing.

Counts the distinct storages autograd saves in one forward pass (``saved_tensors_hooks``;
parameters left out), so the numbers do not depend on the device or its allocator. Each pattern
of ``--checkpoint`` (``*`` = one name component) selects modules by name, as mmengine's Runner
key ``activation_checkpointing`` does, and is measured alone and, with several, all together
(docs/en/advanced_guides/performance.md).
"""
import argparse
import re

import torch
from mmengine.logging import MMLogger
from mmengine.runner.activation_checkpointing import turn_on_activation_checkpointing

from benchmark_utils import (add_config_args, build_for_training, format_table, label_of, load_cfg,
                             synthetic_batch, write_json)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('configs', nargs='+', help='config files (or pkg::path.py); ratios to the first')
    p.add_argument('--checkpoint', nargs='+', default=[], metavar='PATTERN',
                   help="module names to checkpoint, e.g. 'neck.aux_decoders.*'")
    p.add_argument('--batch-size', type=int, default=2)
    add_config_args(p)
    return p.parse_args(argv)


def saved_bytes(model, batch) -> int:
    """Bytes of the distinct non-parameter storages one forward pass saves for backward."""
    params, saved = {p.untyped_storage().data_ptr() for p in model.parameters()}, {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**model.data_preprocessor(batch, True), mode='loss')
    return sum(saved.values())


def matching(model, pattern):
    regex = re.compile(re.escape(pattern).replace(r'\*', r'[^.]+') + '$')
    return [name for name, _ in model.named_modules() if regex.match(name)]


def measure(args):
    MMLogger.get_current_instance().setLevel('WARNING')  # not the optimizer's per-parameter log
    rows, out, seen = [], [], []
    for path in args.configs:
        variants = [('-', [])] + [(p, [p]) for p in args.checkpoint] + [('all', args.checkpoint)]
        for label, patterns in variants:
            model, _, _, size = build_for_training(
                load_cfg(path, args.cfg_options, args.allow_new_keys), torch.device('cpu'), 'fp32')
            modules = [m for p in patterns for m in matching(model, p)]
            if (path, modules) in seen or patterns and not modules:
                continue  # a row already measured, or no such module here (MAE: aux decoders)
            seen.append((path, modules))
            turn_on_activation_checkpointing(model, modules)
            n = saved_bytes(model, synthetic_batch(args.batch_size, size, torch.device('cpu')))
            out.append(dict(config=label_of(path), checkpoint=label, modules=modules, bytes=n))
            rows.append([label_of(path), label, f'{n / 2**20:.1f}',
                         f'{n / out[0]["bytes"]:.2f}x'])
    print(format_table(rows, ['config', 'checkpointed', 'MiB saved for backward', 'ratio']))
    return out


def main(argv=None):
    args = parse_args(argv)
    return write_json(measure(args), args.json)  # [{config, checkpoint, modules, bytes}]


if __name__ == '__main__':
    main()
