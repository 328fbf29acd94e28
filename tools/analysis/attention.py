"""Mean attention distance per head and block, and head diversity per block, for one or several
checkpoints side by side (e.g. MAE vs DeepMIM).
"""
import os.path as osp

import torch

from analysis_utils import (encoder_results, iter_batches, parse_args, pyplot, run, save_figure,
                            write_csv)


@torch.no_grad()
def analyse(model, files, batch_size, skip_corrupt=False):
    """Per-block ``(H,)`` mean distances and the image-averaged head dissimilarity."""
    from deepmim_mm.analysis import (capture_attention, encode_unmasked, head_dissimilarity,
                                     mean_attention_distance, vit_geometry)
    backbone = model.backbone
    grid, patch, extra = vit_geometry(backbone)
    n_blocks = len(backbone.layers)
    dist_sum = [0.0] * n_blocks
    dis_sum = [0.0] * n_blocks
    count = 0
    with capture_attention(backbone.layers) as maps:
        for _, inputs in iter_batches(model, files, batch_size, skip_corrupt=skip_corrupt):
            encode_unmasked(backbone, inputs)
            for b in range(n_blocks):
                dist_sum[b] = dist_sum[b] + mean_attention_distance(
                    maps[b], grid, patch, extra).sum(dim=0).cpu()
                if maps[b].shape[1] > 1:
                    dis_sum[b] += float(head_dissimilarity(maps[b], grid, extra).sum())
            count += inputs.shape[0]
    per_head = [d / count for d in dist_sum]
    dissim = [d / count if per_head[b].numel() > 1 else float('nan')
              for b, d in enumerate(dis_sum)]
    return per_head, dissim


def plot(out_dir, names, results):
    from matplotlib.ticker import MaxNLocator
    n = len(names)
    ymax = max(float(d.max()) for per_head, _ in results for d in per_head) * 1.1
    plt = pyplot()
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.8), squeeze=False, sharey=True)
    for ax, name, (per_head, _) in zip(axes[0], names, results):
        for b, d in enumerate(per_head):
            ax.scatter([b + 1] * d.numel(), d.numpy(), s=14)
        ax.set(title=name, xlabel='block (1-indexed)', ylim=(0, ymax))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=.3)
    axes[0][0].set_ylabel('mean attention distance (px)')
    save_figure(fig, osp.join(out_dir, 'attention_distance.png'))

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, (per_head, dissim) in zip(names, results):
        blocks = list(range(1, len(per_head) + 1))
        axes[0].plot(blocks, [float(d.std(unbiased=False)) for d in per_head], 'o-', label=name)
        axes[1].plot(blocks, dissim, 'o-', label=name)
    for ax, ylabel in zip(axes, ('std over heads of distance (px)',
                                 '1 - mean pairwise head cosine sim.')):
        ax.set(xlabel='block (1-indexed)', ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=.3)
        ax.legend()
    save_figure(fig, osp.join(out_dir, 'attention_diversity.png'))


def main(argv=None):
    args = parse_args(__doc__, argv)
    names, results = encoder_results(
        args, lambda model, files: analyse(model, files, args.batch_size, args.skip_corrupt))
    dist_rows, div_rows = [], []
    for name, (per_head, dissim) in zip(names, results):
        for b, d in enumerate(per_head):
            dist_rows += [[name, b + 1, h, float(v)] for h, v in enumerate(d)]
            div_rows.append([name, b + 1, float(d.mean()), float(d.std(unbiased=False)),
                             dissim[b]])
    write_csv(osp.join(args.out_dir, 'attention_distance.csv'),
              ['model', 'block', 'head', 'mean_distance_px'], dist_rows)
    write_csv(osp.join(args.out_dir, 'attention_diversity.csv'),
              ['model', 'block', 'mean_distance_px', 'distance_std_px', 'head_dissimilarity'],
              div_rows)
    plot(args.out_dir, names, results)
    print(f'wrote attention_{{distance,diversity}}.{{csv,png}} to {args.out_dir}')


if __name__ == '__main__':
    run(main)
