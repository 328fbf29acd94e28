# Copyright (c) OpenMMLab. All rights reserved.
# mmpretrain 1.2.0's tools/test.py for mmpretrain, mmseg and mmdet configs (default_scope), with
# an exact checkpoint fit, checked --cfg-options and data folders, and gloo runs without CUDA.
from copy import deepcopy

import mmengine
from mmengine.config import ConfigDict
from mmengine.evaluator import DumpResults

from deepmim_mm.datasets import check_data_folders
from deepmim_mm.utils import (apply_cfg_options, build_runner, read_runner_config,
                              record_for_torchrun, run, runner_arg_parser)


def parse_args(argv=None):
    parser = runner_arg_parser('Test (and evaluate) a model', 'test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='the file to output results.')
    parser.add_argument('--out-item', choices=['metrics', 'pred'],
                        help='output the metrics or the predictions (default) to --out')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision test')
    parser.add_argument('--show-dir',
                        help='directory where the visualization images will be saved.')
    parser.add_argument('--show', action='store_true',
                        help='whether to display the prediction results in a window.')
    parser.add_argument('--interval', type=int, default=1,
                        help='visualize per interval samples.')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='display time of every window. (second)')
    parser.add_argument(
        '--tta', action='store_true',
        help='test-time augmentation: the config\'s tta_model and tta_pipeline when it has '
        'them, otherwise flip TTA averaging the class scores')
    args = parser.parse_args(argv)
    if args.out is None and args.out_item is not None:
        parser.error('--out-item needs --out (the file to write)')
    return args


def apply_show_and_tta(cfg, args):
    """The display and TTA flags, as the ``tools/test.py`` of the config's ``default_scope``
    applies them; ``--interval`` reaches every scope's hook (mmseg's and mmdet's tools do not)."""
    scope = cfg.get('default_scope', 'mmpretrain')
    if args.show or args.show_dir is not None:
        hook = cfg.get('default_hooks', {}).get('visualization')
        if hook is None:
            raise ValueError(f'{args.config}: --show/--show-dir need default_hooks.visualization '
                             f"(the visualization hook of {scope}'s default_runtime.py)")
        hook.interval = args.interval
        if scope == 'mmpretrain':
            hook.update(enable=True, show=args.show, wait_time=args.wait_time,
                        out_dir=args.show_dir)
        else:
            hook.draw = True
            if args.show:
                hook.update(show=True, wait_time=args.wait_time)
            if args.show_dir is not None:
                if scope == 'mmdet':
                    hook.test_out_dir = args.show_dir
                else:  # mmseg: its hook writes through the visualizer's backends
                    cfg.visualizer.save_dir = args.show_dir

    if not args.tta:
        return
    test_dataset = cfg.test_dataloader.dataset
    while 'dataset' in test_dataset:  # dataset wrappers
        test_dataset = test_dataset.dataset
    pack = test_dataset.pipeline[-1]  # the last transform of the TTA branches
    if scope == 'mmseg':
        missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
        if missing:
            raise ValueError(f'{args.config}: --tta needs {" and ".join(missing)} in the config '
                             "(mmseg's _base_/default_runtime.py and _base_/datasets/*.py "
                             'define them)')
    elif scope == 'mmdet':
        if 'tta_model' not in cfg:
            cfg.tta_model = dict(type='DetTTAModel', tta_cfg=dict(
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
        pack = dict(type='PackDetInputs')  # its default meta_keys hold the flip DetTTAModel needs
        if cfg.tta_model.get('type') in ('DetTTAModel', 'mmdet.DetTTAModel') and \
                cfg.model.get('roi_head', {}).get('mask_head') is not None:
            raise ValueError(f'{args.config}: --tta: mmdet 3.3\'s DetTTAModel merges boxes only '
                             'and refuses instance masks, and this model (roi_head.mask_head) '
                             'predicts masks; set a tta_model that merges masks, or test '
                             'without --tta')
    elif 'tta_model' not in cfg:
        cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
    if 'tta_pipeline' not in cfg:
        cfg.tta_pipeline = deepcopy(test_dataset.pipeline)
        cfg.tta_pipeline[-1] = dict(type='TestTimeAug', transforms=[
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)], [pack]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    test_dataset.pipeline = cfg.tta_pipeline


@record_for_torchrun
def main(argv=None):
    args = parse_args(argv)
    cfg = read_runner_config(args, ('test_dataloader', ))
    cfg.load_from = args.checkpoint
    # mmengine loads it with strict=False and only logs what did not fit: an evaluation of a
    # model left partly at its random initialisation would be a wrong number with exit 0.
    hooks = [h for h in cfg.get('custom_hooks') or []
             if str(h.get('type', '')).split('.')[-1] != 'CheckpointMatchHook']
    cfg.custom_hooks = hooks + [dict(type='CheckpointMatchHook', strict=True)]
    if args.amp:
        cfg.test_cfg.fp16 = True
    apply_cfg_options(cfg, args.cfg_options, args.allow_new_keys)
    # After --cfg-options, as mmseg's and mmdet's tools: TTA wraps the final model and pipeline.
    apply_show_and_tta(cfg, args)
    check_data_folders(cfg, ('test_dataloader', ))

    runner = build_runner(cfg)
    if args.out and args.out_item in ['pred', None]:
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    metrics = run(runner, 'test')
    if args.out and args.out_item == 'metrics' and runner.rank == 0:  # one writer
        mmengine.dump(metrics, args.out)


if __name__ == '__main__':
    main()
