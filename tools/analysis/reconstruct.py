"""Per-level reconstructions of a DeepMIM (or MAE / MFF) checkpoint.

For every image one PNG: the original, the masked input and, per supervised level, the
reconstruction with the visible patches pasted back (pixel targets) or the per-token cosine
similarity of the prediction to the teacher's features (feature targets); and
``reconstruction_loss.csv``, the head's masked loss per image and level. One random mask per
batch, shared by every level as in training; it depends only on ``--seed``, ``--batch-size``, the
(readable) images and the device, so two checkpoints see the same masks. The checkpoint must fit
the whole model (decoders included).
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


def save_figure(path, name, panels, result, i):
    plt = pyplot()
    levels = result.names
    ncol = 2 + len(levels)
    fig, axes = plt.subplots(1, ncol, figsize=(2.4 * ncol, 2.8), squeeze=False)
    axes = axes[0]
    axes[0].imshow(panels['original'][i])
    axes[0].set_title('original', fontsize=9)
    ratio = float(result.mask[i].mean())
    axes[1].imshow(panels['masked'][i])
    axes[1].set_title(f'masked ({ratio:.0%})', fontsize=9)
    for j, level in enumerate(levels):
        ax = axes[2 + j]
        loss = float(result.losses[i, j])
        if result.kind == 'pixel':
            ax.imshow(panels['levels'][j][i])
            ax.set_title(f'{level}\nloss {loss:.3f}', fontsize=9)
        else:
            cos = panels['cosine'][j][i]
            m = result.mask[i].reshape(cos.shape).cpu().numpy().astype(bool)
            im = ax.imshow(cos, cmap='viridis', vmin=-1, vmax=1)
            ax.set_title(f'{level} cos to teacher\nmasked mean {cos[m].mean():.2f}',
                         fontsize=9)
    if result.kind != 'pixel':
        fig.colorbar(im, ax=list(axes[2:]), fraction=0.02, pad=0.01)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(name, fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    from deepmim_mm.analysis import level_panels, masked_predictions
    args = parse_args(__doc__, argv, add_args, single=True)
    if args.mask_ratio is not None and not 0 < args.mask_ratio < 1:
        raise InputError(f'--mask-ratio must be in (0, 1), got {args.mask_ratio}')
    model = load_model(args.config, args.checkpoint, args, prefix=None).to(args.device)
    if args.mask_ratio is not None:
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
            save_figure(osp.join(args.out_dir, f'{stem}.png'), path, panels, result, i)
            masked = result.mask[i].bool().cpu().numpy()
            for j, level in enumerate(result.names):
                rows.append([path, level, float(result.losses[i, j])])
                if result.kind != 'pixel':  # the mean cosine to the teacher, masked tokens
                    rows[-1].append(float(panels['cosine'][j][i].reshape(-1)[masked].mean()))
    feature = result.kind != 'pixel'
    header = ['image', 'level', 'masked_loss'] + ['masked_mean_cosine'] * feature
    csv_path = osp.join(args.out_dir, 'reconstruction_loss.csv')
    write_csv(csv_path, header, rows)
    print(f'wrote {len(used)} figures and {csv_path} to {args.out_dir}')


if __name__ == '__main__':
    with torch.no_grad():
        run(main)
