# Copyright (c) OpenMMLab. All rights reserved.
"""Count FLOPs and parameters of the metafiles' models as each codebase's get_flops.py does."""
import argparse
import functools
import math
import os
import os.path as osp
import re
import sys
import warnings

import mmengine

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.realpath(__file__))))
INPUT_SIZE = {'mmpretrain': (224, 224), 'mmseg': (512, 512), 'mmdet': (1024, 1024)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('metafiles', nargs='*',
                   help='metafile.yml files (default: every file model-index.yml imports)')
    p.add_argument('--models', nargs='+', help='only these model names')
    mode = p.add_mutually_exclusive_group()
    mode.add_argument('--update', action='store_true',
                      help="write the counts into the metafiles' FLOPs / Parameters fields")
    mode.add_argument('--check', action='store_true',
                      help='exit with status 1 if a metafile value differs from the count')
    return p.parse_args(argv)


def metafiles_of_index(index=osp.join(ROOT, 'model-index.yml')):
    """The metafiles ``model-index.yml`` imports, as absolute paths."""
    return [osp.join(osp.dirname(index), p) for p in mmengine.load(index)['Import']]


def read_models(metafile):
    """The ``Models`` list of a metafile."""
    return mmengine.load(metafile).get('Models') or []


def _build(cfg_path):
    """(model, codebase) for a config: random weights, teachers without their files."""
    from mmengine.registry import MODELS, init_default_scope

    from deepmim_mm.utils import load_config
    cfg = load_config(cfg_path)
    scope = cfg.get('default_scope', 'mmpretrain')
    init_default_scope(scope)
    model_cfg = cfg.model.copy()
    if model_cfg.get('target_generator') is not None:
        model_cfg.target_generator = dict(model_cfg.target_generator, checkpoint=None,
                                          random_init=True)
    if scope == 'mmseg':
        model_cfg.pop('auxiliary_head', None)
    return MODELS.build(model_cfg).eval(), scope


def sdpa_flop(inputs, outputs):
    """FLOPs of ``scaled_dot_product_attention(q, k, v)``: ``q @ k^T`` and ``attn @ v``."""
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(x) for x in inputs[:3])
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


@functools.lru_cache(maxsize=None)  # configs shared by several models are counted once
def complexity(cfg_path):
    """``(flops, params)`` of one config (inputs of ``INPUT_SIZE``; no teacher parameters)."""
    import torch
    from mmengine.analysis import FlopAnalyzer

    torch.manual_seed(0)
    model, scope = _build(cfg_path)
    h, w = INPUT_SIZE[scope]
    params = sum(p.numel() for n, p in model.named_parameters()
                 if not n.startswith('target_generator.'))
    if scope == 'mmpretrain':
        model.forward = model.extract_feat
    elif scope == 'mmdet':  # its RPN and RoI heads read the image's meta (mmseg's need none)
        from mmdet.structures import DetDataSample
        meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                    batch_input_shape=(h, w), scale_factor=(1.0, 1.0))
        model.forward = functools.partial(model.forward,
                                          data_samples=[DetDataSample(metainfo=meta)])
    inputs = (torch.rand(1, 3, h, w), )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        analyzer = FlopAnalyzer(model, inputs)
        analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop)
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        flops = analyzer.total()
    return int(flops), int(params)


def update_text(text, name, flops, params):
    """``text`` (a metafile) with the FLOPs / Parameters lines of model ``name`` replaced in
    place (comments and layout survive); a ``ValueError`` where a line is missing."""
    start = re.search(rf'^(\s*)- Name: {re.escape(name)}\s*$', text, re.M)
    nxt = re.compile(rf'^{start.group(1)}- Name: ', re.M).search(text, start.end())
    end = nxt.start() if nxt else len(text)
    block = text[start.end():end]
    for field, value in (('FLOPs', flops), ('Parameters', params)):
        block, n = re.subn(rf'^(\s+{field}:).*$', rf'\g<1> {value}', block, count=1, flags=re.M)
        if n != 1:
            raise ValueError(f'model {name}: no "{field}:" line in its Metadata')
    return text[:start.end()] + block + text[end:]


def main(argv=None):
    args = parse_args(argv)
    os.chdir(ROOT)
    metafiles = [osp.abspath(m) for m in args.metafiles] or metafiles_of_index()
    mismatches = []
    print(f'{"model":<64}{"FLOPs":>16}{"Parameters":>14}')
    for metafile in metafiles:
        text = open(metafile).read()
        for m in read_models(metafile):
            if args.models and m['Name'] not in args.models:
                continue
            flops, params = complexity(osp.join(ROOT, m['Config']))
            print(f'{m["Name"]:<64}{flops:>16}{params:>14}', flush=True)
            meta = m.get('Metadata') or {}
            if (meta.get('FLOPs'), meta.get('Parameters')) != (flops, params):
                mismatches.append(f'{osp.relpath(metafile, ROOT)}: {m["Name"]}: '
                                  f'FLOPs {meta.get("FLOPs")} -> {flops}, '
                                  f'Parameters {meta.get("Parameters")} -> {params}')
            if args.update:
                text = update_text(text, m['Name'], flops, params)
        if args.update:
            with open(metafile, 'w') as f:
                f.write(text)
    for line in mismatches:
        print(('updated ' if args.update else 'differs: ') + line)
    if args.check and mismatches:
        sys.exit(1)


if __name__ == '__main__':
    main()
