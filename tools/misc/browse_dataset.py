"""Browse a config's dataset after its pipeline: mmpretrain 1.2.0's ``browse_dataset`` (same
arguments and figures) for this plugin's configs, pretraining and fine-tuning alike.

    python tools/misc/browse_dataset.py \\
        configs/pretrain/deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py -o work_dirs/browse \\
        --not-show --show-number 8 [--mode pipeline]
"""
import argparse
import os.path as osp
import sys
import textwrap

from _misc_utils import add_cfg_options, load_config


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', help='config file, or pkg::path.py of an installed package')
    p.add_argument('--output-dir', '-o', help='write one image per sample here')
    p.add_argument('--not-show', action='store_true', help='do not open a window')
    p.add_argument('--phase', '-p', default='train', choices=['train', 'val', 'test'],
                   help='which dataloader\'s dataset (default train)')
    p.add_argument('--show-number', '-n', type=int, default=sys.maxsize,
                   help='number of samples (default: all)')
    p.add_argument('--show-interval', '-i', type=float, default=2,
                   help='seconds each window stays open')
    p.add_argument('--mode', '-m', default='transformed',
                   choices=['original', 'transformed', 'concat', 'pipeline'],
                   help='original: the image as read; transformed: the pipeline\'s output '
                   '(default); concat: both; pipeline: after every transform')
    p.add_argument('--rescale-factor', '-r', type=float,
                   help='(--mode original) rescale factor of the shown image')
    p.add_argument('--channel-order', '-c', default='BGR', choices=['BGR', 'RGB'],
                   help='channel order of the pipeline\'s images (default BGR, as mmcv reads)')
    add_cfg_options(p)
    args = p.parse_args(argv)
    if args.show_number < 1:
        p.error(f'--show-number must be at least 1, got {args.show_number}')
    return args


def make_grid(imgs, names):
    """One figure: a column per entry of ``imgs`` (an image, or a list of images: rows), each
    titled with its name and shape. Returns the figure as an RGB array."""
    from mmengine.visualization.utils import img_from_canvas
    from mmpretrain.visualization import create_figure
    figure = create_figure(dpi=150, figsize=(16, 9))
    rows = max(len(i) if isinstance(i, list) else 1 for i in imgs)
    grid = figure.add_gridspec(rows, len(imgs))
    for col, (img, name) in enumerate(zip(imgs, names)):
        cells = img if isinstance(img, list) else [img]
        for row, cell in enumerate(cells):
            ax = figure.add_subplot(grid[row, col] if isinstance(img, list) else grid[:, col])
            ax.axis(False)
            ax.imshow(cell)
            title = name + (str(row) if isinstance(img, list) else '')
            ax.set_title('\n'.join(textwrap.wrap(title, width=20)) + f'\n{cell.shape[:2]}',
                         fontsize=15, family='monospace')
    figure.tight_layout()
    figure.canvas.draw()
    return img_from_canvas(figure.canvas)


def inspect_pipeline(pipeline, record, visualizer):
    """``pipeline`` that also appends ``{'name', 'img'}`` to ``record`` after each transform
    (the mask of segmentation-style samples drawn on the image), as upstream's
    ``InspectCompose``."""
    from mmengine.dataset import Compose
    from mmpretrain.structures import DataSample

    class InspectCompose(Compose):

        def __call__(self, data):
            if 'img' in data:
                record.append(dict(name='Original', img=data['img'].copy()))
            for t in self.transforms:
                data = t(data)
                if data is None:
                    return None
                if 'img' in data:
                    img = data['img'].copy()
                    if 'mask' in data:
                        first = img[0] if isinstance(img, list) else img
                        first = visualizer.add_mask_to_image(
                            first, DataSample().set_mask(data['mask']), resize=first.shape[:2])
                        img = [first] + img[1:] if isinstance(img, list) else first
                    record.append(dict(name=type(t).__name__, img=img))
            return data

    return InspectCompose(pipeline.transforms)


def pipeline_owner(dataset):
    """The dataset whose ``pipeline`` produces the items (through wrapper datasets)."""
    while not hasattr(dataset, 'pipeline'):
        inner = getattr(dataset, 'dataset', None)
        if inner is None:
            datasets = getattr(dataset, 'datasets', None)
            if not datasets:
                raise SystemExit(f'error: {type(dataset).__name__} has no pipeline and wraps no '
                                 'dataset')
            inner = datasets[0]
        dataset = inner
    return dataset


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.allow_new_keys, import_custom=True)

    from mmengine.registry import VISUALIZERS, init_default_scope
    from mmengine.utils import ProgressBar
    from mmpretrain.datasets.builder import build_dataset
    from mmpretrain.visualization import UniversalVisualizer
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))

    loader = cfg.get(f'{args.phase}_dataloader')
    if not loader or not loader.get('dataset'):
        raise SystemExit(f'error: {args.config} has no {args.phase}_dataloader.dataset '
                         f'(--phase {args.phase})')
    dataset = build_dataset(loader.dataset)

    fig_cfg = dict(figsize=(16, 10))
    vis_cfg = dict(cfg.get('visualizer') or dict(type='UniversalVisualizer'),
                   fig_show_cfg=fig_cfg, fig_save_cfg=fig_cfg, name='browse_dataset')
    vis_cfg.pop('vis_backends', None)  # images go to --output-dir, not to a work dir's backends
    visualizer = VISUALIZERS.build(vis_cfg)  # the registry honours `_scope_`
    if not isinstance(visualizer, UniversalVisualizer):
        raise SystemExit(f'error: visualizer.type is {type(visualizer).__name__}; this tool '
                         'draws with mmpretrain\'s UniversalVisualizer (mmpretrain configs)')
    visualizer.dataset_meta = dataset.metainfo

    record = []
    owner = pipeline_owner(dataset)
    owner.pipeline = inspect_pipeline(owner.pipeline, record, visualizer)

    number = min(args.show_number, len(dataset))
    progress = ProgressBar(number)
    for i in range(number):
        item = dataset[i]
        rescale = None
        if args.mode == 'original':
            image, rescale = record[0]['img'], args.rescale_factor
        elif args.mode == 'transformed':
            image = make_grid([record[-1]['img']], ['transformed'])
        elif args.mode == 'concat':
            image = make_grid([record[0]['img'], record[-1]['img']], ['original', 'transformed'])
        else:
            image = make_grid([r['img'] for r in record], [r['name'] for r in record])
        record.clear()
        sample = item['data_samples']
        name = f'{i:05d}_' + (osp.basename(sample.img_path) if 'img_path' in sample
                              else f'{i}.jpg')
        visualizer.visualize_cls(
            image if args.channel_order == 'RGB' else image[..., ::-1], sample.numpy(),
            rescale_factor=rescale, show=not args.not_show, wait_time=args.show_interval,
            name=name,
            out_file=None if args.output_dir is None else osp.join(args.output_dir, name))
        progress.update()
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
