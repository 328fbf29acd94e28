"""Linear CKA between the blocks of one checkpoint, or of two checkpoints, as heat maps.

Images are encoded *unmasked*; the raw output of every block (before the final norm) is
recorded. Linear CKA (Kornblith et al., ICML 2019, arXiv 1905.00414) then compares two blocks'
representations of the same examples. ``--pool`` chooses the examples:

- ``tokens`` (default): every patch token of every image is an example (CLS dropped), as in
  Raghu et al., "Do Vision Transformers See Like CNNs?" (arXiv 2108.08810); the spatial
  structure counts, and a few images already give thousands of examples. Both models must then
  have the same token grid;
- ``mean``: one example per image, the mean of its patch tokens (needs many images: CKA over
  fewer examples than features is biased upwards);
- ``cls``: one example per image, its CLS token.

Writes, for one model ``A``: ``cka_A.png`` and ``layer_similarity.csv``; with a second model
``B`` also ``cka_B.png`` and ``cka_A_vs_B.png`` (rows: A's blocks, columns: B's).
``layer_similarity.csv`` has one row per pair: model_a, block_a, model_b, block_b, cka (blocks
1-indexed).

Models are given as one or two ``CONFIG CHECKPOINT`` pairs. Only the encoder runs, so only the
checkpoint's ``backbone.`` keys are used, and they must fit the config's backbone exactly; both
pairs are read and checked before the first model is analysed.

Example::

    python tools/analysis/layer_similarity.py mae.py mae.pth deepmim.py deepmim.pth \
        --name MAE DeepMIM --img val_images/ --out-dir out
"""
import argparse
import os
import os.path as osp

import torch

from analysis_utils import (InputError, add_common_args, add_model_args, check_device,
                            check_out_dir, collect_images, iter_batches, load_models, model_names,
                            model_pairs, run, safe_name, write_csv)

POOLS = ('tokens', 'mean', 'cls')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_model_args(parser)
    parser.add_argument('--pool', default='tokens', choices=POOLS,
                        help='what one example is (see the module docstring); default tokens')
    add_common_args(parser)
    args = parser.parse_args(argv)
    args.pairs = model_pairs(parser, args.models, max_models=2)
    return args


@torch.no_grad()
def block_features(model, files, batch_size, pool, skip_corrupt=False):
    """One ``(examples, C)`` float32 CPU tensor per block."""
    from deepmim_mm.analysis import capture_block_outputs, encode_unmasked, vit_geometry
    if pool not in POOLS:
        raise ValueError(f'pool={pool!r}; accepted: {POOLS}')
    backbone = model.backbone
    (h, w), _, extra = vit_geometry(backbone)
    feats = [[] for _ in backbone.layers]
    with capture_block_outputs(backbone.layers) as outs:
        for _, inputs in iter_batches(model, files, batch_size, skip_corrupt=skip_corrupt):
            encode_unmasked(backbone, inputs)
            for b in range(len(feats)):
                x = outs[b].float()
                if x.shape[1] != h * w + extra:  # CKA of masked subsets would be no error
                    raise RuntimeError(f'block {b + 1} output {tuple(x.shape)} is not the '
                                       f'{h}x{w} grid + {extra} token(s): was the input masked?')
                if pool == 'cls':
                    f = x[:, 0]
                elif pool == 'mean':
                    f = x[:, extra:].mean(dim=1)
                else:
                    f = x[:, extra:].reshape(-1, x.shape[-1])
                feats[b].append(f.cpu())
    return [torch.cat(f) for f in feats]


def heatmap(path, matrix, title, ylabel, xlabel):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    n, m = matrix.shape
    fig, ax = plt.subplots(figsize=(2.0 + 0.3 * max(m, 8), 1.4 + 0.3 * max(n, 8)))
    im = ax.imshow(matrix.numpy(), origin='lower', vmin=0, vmax=1, cmap='magma')
    ax.set_xticks(range(m), [str(j + 1) for j in range(m)], fontsize=7)
    ax.set_yticks(range(n), [str(i + 1) for i in range(n)], fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label='linear CKA')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    from deepmim_mm.analysis import cka_matrix
    args = parse_args(argv)
    device = check_device(args.device)
    check_out_dir(args.out_dir)
    names = model_names([c for c, _ in args.pairs], args.name)
    if len(names) == 2 and names[0] == names[1]:
        names = [names[0] + '_a', names[1] + '_b']
    files = collect_images(args.img, args.max_images)
    models = load_models(args.pairs, torch.device('cpu'), args.cfg_options, encoder_only=True,
                         allow_new_keys=args.allow_new_keys)
    feats = []
    for i, (name, (cfg, ckpt)) in enumerate(zip(names, args.pairs)):
        print(f'{name}: {cfg}, {ckpt}')
        model, models[i] = models[i].to(device), None  # one model on the device at a time
        feats.append(block_features(model, files, args.batch_size, args.pool, args.skip_corrupt))
        del model
    if len(feats) == 2 and feats[0][0].shape[0] != feats[1][0].shape[0]:
        raise InputError(f'--pool {args.pool}: the models give {feats[0][0].shape[0]} and '
                         f'{feats[1][0].shape[0]} examples (different token grids?); use '
                         '--pool mean or cls to compare them')
    os.makedirs(args.out_dir, exist_ok=True)
    pairs = [(0, 0)] + ([(1, 1), (0, 1)] if len(feats) == 2 else [])
    rows = []
    for a, b in pairs:
        mat = cka_matrix(feats[a], feats[b])
        for i in range(mat.shape[0]):
            rows += [[names[a], i + 1, names[b], j + 1, float(mat[i, j])]
                     for j in range(mat.shape[1])]
        if a == b:
            fname = f'cka_{safe_name(names[a])}.png'
            title = f'{names[a]}\nlinear CKA between blocks ({args.pool})'
        else:
            fname = f'cka_{safe_name(names[a])}_vs_{safe_name(names[b])}.png'
            title = f'{names[a]} vs {names[b]}\nlinear CKA ({args.pool})'
        heatmap(osp.join(args.out_dir, fname), mat, title, f'{names[a]} block',
                f'{names[b]} block')
    write_csv(osp.join(args.out_dir, 'layer_similarity.csv'),
              ['model_a', 'block_a', 'model_b', 'block_b', 'cka'], rows)
    print(f'wrote CKA heat maps and layer_similarity.csv to {args.out_dir}')


if __name__ == '__main__':
    run(main)
