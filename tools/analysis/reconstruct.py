"""Per-level reconstructions of a DeepMIM (or MAE / MFF) checkpoint: one PNG per image and
``reconstruction_loss.csv``
(docs/en/user_guides/analysis.md#reconstructions-attention-and-layer-similarity).
"""
import os
import os.path as osp

import torch

from analysis_utils import (InputError, iter_batches, load_model, parse_args, pyplot, run,
                            safe_name, write_csv)


def add_args(parser):
    parser.add_argument('--seed', type=int, default=0, help='seed of the random mask')
    parser.add_argument('--mask-ratio', type=float, default=None,
                        help='override the backbone mask ratio (default: the config\'s)')


def figure(name, panels, result, i, rows):
    """Image ``i``: original | masked | per level, the reconstruction with the visible patches
    pasted back (pixel targets) or the cosine map to the teacher (``rows``: its CSV rows)."""
    cols = [(panels['original'][i], 'original'),
            (panels['masked'][i], f'masked ({float(result.mask[i].mean()):.0%})')]
    for j, row in enumerate(rows):
        if result.kind == 'pixel':
            cols.append((panels['levels'][j][i], f'{row[1]}\nloss {row[2]:.3f}'))
        else:
            cols.append((panels['cosine'][j][i], f'{row[1]} cos to teacher\nmasked mean '
                         f'{row[3]:.2f}'))
    fig, axes = pyplot().subplots(1, len(cols), figsize=(2.4 * len(cols), 2.8), squeeze=False)
    for ax, (img, title) in zip(axes[0], cols):
        im = ax.imshow(img, cmap='viridis', vmin=-1, vmax=1)  # the map of a cosine, not RGB
        ax.set_title(title, fontsize=9)
        ax.set(xticks=[], yticks=[])
    if result.kind != 'pixel':
        fig.colorbar(im, ax=list(axes[0][2:]), fraction=0.02, pad=0.01)
    fig.suptitle(name, fontsize=9)
    return fig


def main(argv=None):
    from deepmim_mm.analysis import level_panels, masked_predictions
    args = parse_args(__doc__, argv, add_args, max_models=1)
    if args.mask_ratio is not None and not 0 < args.mask_ratio < 1:
        raise InputError(f'--mask-ratio must be in (0, 1), got {args.mask_ratio}')
    model = load_model(*args.pairs[0], args, prefix=None).to(args.device)
    if args.mask_ratio is not None:  # a hybrid teacher encodes the student's visible patches
        model.backbone.mask_ratio = args.mask_ratio
    rows, used = [], set()
    batches = iter_batches(model, args.files, args.batch_size, skip_corrupt=args.skip_corrupt)
    for b, (paths, inputs) in enumerate(batches):
        os.makedirs(args.out_dir, exist_ok=True)  # once an image was read
        # One seed per batch: the same images get the same mask whatever the checkpoint.
        result = masked_predictions(model, inputs, seed=args.seed + b)
        panels = level_panels(model, inputs, result)
        for i, path in enumerate(paths):
            stem = base = safe_name(osp.splitext(osp.basename(path))[0])
            k = 1
            while stem in used:  # same file name in two folders
                stem, k = f'{base}_{k}', k + 1
            used.add(stem)
            masked = result.mask[i].bool().cpu().numpy()
            for j, level in enumerate(result.names):
                rows.append([path, level, float(result.losses[i, j])])
                if result.kind != 'pixel':  # the mean cosine to the teacher, masked tokens
                    rows[-1].append(float(panels['cosine'][j][i].reshape(-1)[masked].mean()))
            fig = figure(path, panels, result, i, rows[-len(result.names):])
            fig.savefig(osp.join(args.out_dir, f'{stem}.png'), dpi=100)  # no tight layout: colorbar
            pyplot().close(fig)
    feature = result.kind != 'pixel'
    header = ['image', 'level', 'masked_loss'] + ['masked_mean_cosine'] * feature
    csv_path = osp.join(args.out_dir, 'reconstruction_loss.csv')
    write_csv(csv_path, header, rows)
    print(f'wrote {len(used)} figures and {csv_path} to {args.out_dir}')


if __name__ == '__main__':
    with torch.no_grad():
        run(main)
