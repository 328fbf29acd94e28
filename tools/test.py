# Copyright (c) OpenMMLab. All rights reserved.
# Adapted from mmpretrain 1.2.0 tools/test.py. Added: the plugin's modules are registered and its
# opt-in fixes for the pinned stack (deepmim_mm.compat) applied before the checkpoint is loaded;
# distributed runs on machines without CUDA (gloo); the process group is destroyed before exit.
# Works for mmpretrain, mmseg and mmdet configs alike: the config's default_scope selects the
# registries.
import argparse
import os
import os.path as osp
from copy import deepcopy

import mmengine
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.evaluator import DumpResults
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import deepmim_mm  # noqa: F401  registers the plugin's modules
from deepmim_mm.compat import apply_all as apply_compat_fixes
from deepmim_mm.engine.config_checks import ALLOW_NEW_FLAG, check_cfg_options, check_work_dir
from deepmim_mm.engine.launcher import check_launcher_env, finish_distributed, init_cpu_distributed


def parse_args():
    parser = argparse.ArgumentParser(
        description='MMPreTrain test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', help='the file to output results.')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='To output whether metrics or predictions. '
        'Defaults to output predictions.')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic-mixed-precision test')
    parser.add_argument(
        '--show-dir',
        help='directory where the visualization images will be saved.')
    parser.add_argument(
        '--show',
        action='store_true',
        help='whether to display the prediction results in a window.')
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='visualize per interval samples.')
    parser.add_argument(
        '--wait-time',
        type=float,
        default=2,
        help='display time of every window. (second)')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='whether to disable the pin_memory option in dataloaders.')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='Whether to enable the Test-Time-Aug (TTA). If the config file '
        'has `tta_pipeline` and `tta_model` fields, use them to determine the '
        'TTA transforms and how to merge the TTA results. Otherwise, use flip '
        'TTA by averaging classification score.')
    parser.add_argument(
        ALLOW_NEW_FLAG,
        action='store_true',
        help='let --cfg-options add keys the config does not have (by default a key whose '
        'path does not exist is an error naming the closest existing key)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # When using PyTorch version >= 2.0.0, the `torch.distributed.launch`
    # will pass the `--local-rank` parameter to `tools/train.py` instead
    # of `--local_rank`.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Merge CLI arguments to config."""
    cfg.launcher = args.launcher

    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        # update configs according to CLI args if args.work_dir is not None
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        # use config filename as default work_dir if cfg.work_dir is None
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    cfg.load_from = args.checkpoint
    # mmengine loads it with strict=False and only logs what did not fit: an evaluation of a
    # model left partly at its random initialisation would be a wrong number with exit 0.
    hooks = [h for h in cfg.get('custom_hooks') or []
             if str(h.get('type', '')).split('.')[-1] != 'CheckpointMatchHook']
    cfg.custom_hooks = hooks + [dict(type='CheckpointMatchHook', strict=True)]

    # enable automatic-mixed-precision test
    if args.amp:
        cfg.test_cfg.fp16 = True

    # ----------------- Default dataloader args -----------------
    default_dataloader_cfg = ConfigDict(
        pin_memory=True,
        collate_fn=dict(type='default_collate'),
    )
    # mmpretrain batches with default_collate; mmseg and mmdet configs (default_scope mmseg /
    # mmdet) keep the Runner's pseudo_collate, which their data preprocessors expect.
    if cfg.get('default_scope', 'mmpretrain') != 'mmpretrain':
        default_dataloader_cfg.pop('collate_fn')

    def set_default_dataloader_cfg(cfg, field):
        if cfg.get(field, None) is None:
            return
        dataloader_cfg = deepcopy(default_dataloader_cfg)
        dataloader_cfg.update(cfg[field])
        cfg[field] = dataloader_cfg
        if args.no_pin_memory:
            cfg[field]['pin_memory'] = False

    set_default_dataloader_cfg(cfg, 'test_dataloader')

    if args.cfg_options is not None:
        check_cfg_options(cfg, args.cfg_options, args.allow_new_keys)
        cfg.merge_from_dict(args.cfg_options)

    # After --cfg-options (as mmseg's and mmdet's tools do): TTA wraps the final model and test
    # pipeline.
    apply_show_and_tta(cfg, args)
    return cfg


def apply_show_and_tta(cfg, args):
    """``--show`` / ``--show-dir`` / ``--interval`` / ``--wait-time`` and ``--tta``, done as the
    config's own library does in its ``tools/test.py`` (its ``default_scope`` decides):

    - mmpretrain: ``VisualizationHook(enable, show, wait_time, out_dir, interval)``; TTA with the
      config's ``tta_model`` / ``tta_pipeline`` or flip TTA averaging the class scores;
    - mmseg 1.2.2: ``SegVisualizationHook(draw=True, show, wait_time)`` and the visualizer's
      ``save_dir`` (images under ``<show-dir>/vis_data/vis_image/``); TTA with the config's
      ``tta_model`` and ``tta_pipeline`` (mmseg's ADE20K configs: multi-scale + flip);
    - mmdet 3.3.0: ``DetVisualizationHook(draw=True, show, wait_time, test_out_dir)`` (images
      under ``<work_dir>/<timestamp>/<show-dir>`` for a relative path, as mmdet does); TTA with
      the config's ``tta_model`` / ``tta_pipeline`` or mmdet's defaults (``DetTTAModel``, NMS
      0.5, flip), which merge boxes only (mmdet asserts on instance masks).

    ``--interval`` is passed to every scope's hook (mmseg's and mmdet's tools leave the hook's
    default of 50).
    """
    scope = cfg.get('default_scope', 'mmpretrain')
    if args.show or args.show_dir is not None:
        hook = cfg.get('default_hooks', {}).get('visualization')
        if hook is None:
            raise ValueError(f'{args.config}: --show/--show-dir need a visualization hook in '
                             'default_hooks (e.g. default_hooks.visualization='
                             f'dict(type={_VIS_HOOKS.get(scope, "VisualizationHook")!r}))')
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
        if 'tta_pipeline' not in cfg:
            cfg.tta_pipeline = deepcopy(test_dataset.pipeline)
            cfg.tta_pipeline[-1] = dict(type='TestTimeAug', transforms=[
                [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                [dict(type='PackDetInputs', meta_keys=(
                    'img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                    'flip_direction'))]])
        if cfg.tta_model.get('type') in ('DetTTAModel', 'mmdet.DetTTAModel') and \
                cfg.model.get('roi_head', {}).get('mask_head') is not None:
            raise ValueError(f'{args.config}: --tta: mmdet 3.3\'s DetTTAModel merges boxes only '
                             'and refuses instance masks, and this model (roi_head.mask_head) '
                             'predicts masks; set a tta_model that merges masks, or test '
                             'without --tta')
    else:
        if 'tta_model' not in cfg:
            cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
        if 'tta_pipeline' not in cfg:
            test_pipeline = test_dataset.pipeline
            cfg.tta_pipeline = deepcopy(test_pipeline)
            cfg.tta_pipeline[-1] = dict(type='TestTimeAug', transforms=[
                [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                [test_pipeline[-1]]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    test_dataset.pipeline = cfg.tta_pipeline


_VIS_HOOKS = dict(mmpretrain='VisualizationHook', mmseg='SegVisualizationHook',
                  mmdet='DetVisualizationHook')


def main():
    args = parse_args()

    if args.out is None and args.out_item is not None:
        raise ValueError('Please use `--out` argument to specify the '
                         'path of the output file before using `--out-item`.')

    check_launcher_env(args.launcher)
    apply_compat_fixes()

    # load config
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)

    # merge cli arguments to config
    cfg = merge_args(cfg, args)
    check_work_dir(cfg.work_dir)
    init_cpu_distributed(cfg, args.launcher)

    # build the runner from config
    if 'runner_type' not in cfg:
        # build the default runner
        runner = Runner.from_cfg(cfg)
    else:
        # build customized runner from the registry
        # if 'runner_type' is set in the cfg
        runner = RUNNERS.build(cfg)

    if args.out and args.out_item in ['pred', None]:
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))

    # start testing
    try:
        metrics = runner.test()
    finally:
        finish_distributed()

    if args.out and args.out_item == 'metrics' and runner.rank == 0:  # one writer
        mmengine.dump(metrics, args.out)


if __name__ == '__main__':
    main()
