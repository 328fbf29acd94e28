"""Browse a config's dataset through its pipeline, with mmpretrain's arguments and figures."""
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


def upstream_inspect_compose():
    """``InspectCompose`` of mmpretrain's ``browse_dataset.py`` (the wheel's ``.mim/tools``, or a
    checkout's): it records every transform's output."""
    import runpy

    import mmpretrain
    root = osp.dirname(mmpretrain.__file__)
    for tools in (osp.join(root, '.mim', 'tools'), osp.join(osp.dirname(root), 'tools')):
        path = osp.join(tools, 'visualization', 'browse_dataset.py')
        if osp.isfile(path):
            return runpy.run_path(path)['InspectCompose']
    raise SystemExit(f'error: mmpretrain under {root} has no tools/visualization/browse_dataset.py '
                     '(install its wheel, or a source checkout)')


def make_grid(imgs, names):
    """Upstream's ``make_grid`` without its ``adjust_bbox`` call, which matplotlib 3.11 refuses."""
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


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.allow_new_keys)

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

    owner, record = dataset, []
    while not hasattr(owner, 'pipeline'):  # mmengine's wrappers: RepeatDataset, ConcatDataset
        owner = owner.dataset if hasattr(owner, 'dataset') else owner.datasets[0]
    owner.pipeline = upstream_inspect_compose()(owner.pipeline.transforms, record, visualizer)

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
