"""Regenerates the figures of the docs in docs/en/_static/ (each PNG < 200 KB):

    PYTHONPATH=$PWD .venv/bin/python docs/en/_scripts/make_figures.py [--work-dir DIR]

- method.png: the method (encoder, supervised levels, one decoder per level, targets), drawn.
- reconstructions.png: per-level reconstructions of two held-out demo images by the quick
  start's checkpoint (tools/analysis/reconstruct.py).
- knn.png: kNN top-1 per level during the quick start (the demo config's KNNMonitorHook).

DIR is the quick start's work dir (default work_dirs/quickstart, where `bash tools/quickstart.sh`
trains): a finished run there is reused, else the quick start's training runs first (a few
minutes on 2 free cores).
"""
import argparse
import glob
import json
import os.path as osp
import subprocess
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
STATIC = osp.join(ROOT, 'docs', 'en', '_static')
DEMO = 'configs/pretrain/deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py'
VAL = ['deepmim_mm/demo/images/val/scene/color.JPEG',
       'deepmim_mm/demo/images/val/texture/moon.JPEG']


def box(ax, x, y, w, h, text, color, size=8):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle='round,pad=0.02', fc=color, ec='0.3'))
    ax.text(x + w / 2, y + h / 2, text, ha='center', va='center', fontsize=size)


def arrow(ax, start, end):
    ax.annotate('', end, start, arrowprops=dict(arrowstyle='->', color='0.3', lw=1))


def method_figure(path, depth=12, levels=(6, 8, 10, 12)):
    """ViT-B DeepMIM: the default levels 1/2, 2/3, 5/6 of the depth and the last block."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    box(ax, 0, 3, 1.1, 0.7, 'image\n75% masked', '#eeeeee')
    arrow(ax, (1.1, 3.35), (1.4, 3.35))
    for b in range(1, depth + 1):
        x = 1.4 + (b - 1) * 0.7
        box(ax, x, 3, 0.55, 0.7, f'{b}', '#9ecae1' if b in levels else '#deebf7')
        if b < depth:
            arrow(ax, (x + 0.55, 3.35), (x + 0.7, 3.35))
        if b in levels:
            arrow(ax, (x + 0.27, 3), (x + 0.27, 2.35))
            box(ax, x - 0.2, 1.65, 0.95, 0.7, f'decoder\nblock{b}', '#fdd0a2')
            arrow(ax, (x + 0.27, 1.65), (x + 0.27, 1.05))
            ax.text(x + 0.32, 1.3, 'prediction', fontsize=6, color='0.4')
            box(ax, x - 0.2, 0.35, 0.95, 0.7, f'loss_block{b}', '#c7e9c0')
    ax.text(1.4 + depth * 0.35, 3.9, 'ViT encoder (visible patches only; supervised blocks '
            'dark)', ha='center', fontsize=9)
    box(ax, 0, 0.35, 1.1, 0.7, 'target:\npixels | CLIP\n| hybrid', '#fff7bc', size=7)
    first = 1.4 + (levels[0] - 1) * 0.7 - 0.2
    ax.annotate('', (first, 0.7), (1.1, 0.7),
                arrowprops=dict(arrowstyle='->', ls='--', color='0.5'))
    ax.text((1.1 + first) / 2, 0.78, 'to every level', ha='center', fontsize=8)
    ax.text(0, 0.05, 'one mask and one target for every level; the loss is the weighted sum of '
            'the levels', fontsize=8)
    ax.set_xlim(-0.1, 1.5 + depth * 0.7)
    ax.set_ylim(0, 4.2)
    ax.axis('off')
    fig.savefig(path, dpi=90, bbox_inches='tight')
    plt.close(fig)


def train_demo(work_dir):
    """The quick start's training (tools/quickstart.sh without the set-up), unless finished."""
    if not osp.isfile(osp.join(work_dir, 'epoch_20.pth')):
        subprocess.run([sys.executable, 'tools/train.py', DEMO, '--work-dir', work_dir],
                       cwd=ROOT, check=True)


def reconstructions(work_dir, path):
    out = osp.join(work_dir, 'reconstruct')
    subprocess.run([sys.executable, 'tools/analysis/reconstruct.py', DEMO,
                    osp.join(work_dir, 'epoch_20.pth'), '--img', *VAL, '--out-dir', out],
                   cwd=ROOT, check=True)
    stack(sorted(glob.glob(osp.join(out, '*.png'))), path)


def stack(pngs, path):
    """The PNGs one below the other, white margins cropped, 128 colours."""
    panels = [Image.open(p).convert('RGB') for p in pngs]
    panels = [p.crop(ImageOps.invert(p.convert('L')).getbbox()) for p in panels]
    sheet = Image.new('RGB', (max(p.width for p in panels), sum(p.height for p in panels) + 10 *
                              len(panels)), 'white')
    for i, panel in enumerate(panels):
        sheet.paste(panel, (0, sum(p.height + 10 for p in panels[:i])))
    sheet.quantize(128).save(path, optimize=True)


def knn_plot(work_dir, path):
    scalars = sorted(glob.glob(osp.join(work_dir, '2*', 'vis_data', 'scalars.json')))[-1]
    records = [r for r in map(json.loads, open(scalars)) if any('knn_top1/' in k for k in r)]
    keys = sorted({k for r in records for k in r if k.startswith('knn_top1/')},
                  key=lambda k: int(k.split('block')[-1]))
    val = len(glob.glob(osp.join(ROOT, 'deepmim_mm', 'demo', 'images', 'val', '*', '*')))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, key in enumerate(keys):  # shrinking markers: levels with equal values stay visible
        ax.plot([r['step'] for r in records], [r[key] for r in records], marker='osD^v'[i % 5],
                markersize=9 - 1.5 * i, label=key.split('/')[1])
    ax.set(xlabel='iteration', ylabel='kNN top-1 (%)',
           title=f'quick start: kNN per level ({val} val images)')
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=90, bbox_inches='tight')
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'quickstart'))
    work_dir = osp.abspath(parser.parse_args().work_dir)
    method_figure(osp.join(STATIC, 'method.png'))
    train_demo(work_dir)
    reconstructions(work_dir, osp.join(STATIC, 'reconstructions.png'))
    knn_plot(work_dir, osp.join(STATIC, 'knn.png'))
    for name in ('method', 'reconstructions', 'knn'):
        print(f'{name}.png: {osp.getsize(osp.join(STATIC, name + ".png")) // 1024} KB')


if __name__ == '__main__':
    main()
