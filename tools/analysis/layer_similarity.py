"""Linear CKA between the blocks of one checkpoint, or of two checkpoints, as heat maps."""
import os
import os.path as osp

import analysis_utils
from analysis_utils import (InputError, encoder_results, iter_batches, pyplot, run, safe_name,
                            save_figure, write_csv)

POOLS = {'tokens': None, 'mean': 'avg', 'cls': 'cls'}  # --pool -> analysis.pool_tokens


def parse_args(argv=None):
    return analysis_utils.parse_args(
        __doc__, argv, max_models=2, add_args=lambda parser: parser.add_argument(
            '--pool', default='tokens', choices=list(POOLS),
            help='one example: every patch token of every image (default; both models need the '
            'same token grid), or per image its mean patch token or class token'))


def block_features(model, files, batch_size, pool, skip_corrupt=False):
    """One ``(examples, C)`` float32 CPU tensor per block."""
    from deepmim_mm.analysis import extract_features, vit_geometry
    batches = (x for _, x in iter_batches(model, files, batch_size, skip_corrupt=skip_corrupt))
    feats = extract_features(model, batches, 'all', pools=(POOLS[pool], ))
    feats = [per[POOLS[pool]] for per in feats.values()]
    if pool == 'tokens':  # every patch token is an example
        extra = vit_geometry(model.backbone)[2]
        feats = [f[:, extra:].flatten(0, 1) for f in feats]
    return feats


def heatmap(path, matrix, title, ylabel, xlabel):
    n, m = matrix.shape
    fig, ax = pyplot().subplots(figsize=(2.0 + 0.3 * max(m, 8), 1.4 + 0.3 * max(n, 8)))
    im = ax.imshow(matrix.numpy(), origin='lower', vmin=0, vmax=1, cmap='magma')
    ax.set_xticks(range(m), [str(j + 1) for j in range(m)], fontsize=7)
    ax.set_yticks(range(n), [str(i + 1) for i in range(n)], fontsize=7)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label='linear CKA')
    save_figure(fig, path)


def main(argv=None):
    from deepmim_mm.analysis import cka_matrix
    args = parse_args(argv)
    names, feats = encoder_results(args, lambda model, files: block_features(
        model, files, args.batch_size, args.pool, args.skip_corrupt))
    if len(names) == 2 and names[0] == names[1]:
        names = [names[0] + '_a', names[1] + '_b']
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
