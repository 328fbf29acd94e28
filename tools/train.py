# Copyright (c) OpenMMLab. All rights reserved.
# Adapted from mmpretrain 1.2.0 tools/train.py. Added: the plugin's modules are registered and its
# opt-in fixes for the pinned stack (deepmim_mm.compat) applied before the Runner loads or resumes
# a checkpoint; --cfg-options keys that do not exist, unknown checkpoint-hook arguments and a
# pretraining image size other than the pipeline's crop are errors before anything is built;
# --resume says what it resumes; distributed runs on machines without CUDA (gloo); AMP configs in
# fp32 without a GPU; the process group is destroyed before exit.
import argparse
import os
import os.path as osp
from copy import deepcopy

from mmengine.config import Config, ConfigDict, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import deepmim_mm  # noqa: F401  registers the plugin's modules
from deepmim_mm.compat import apply_all as apply_compat_fixes
from deepmim_mm.engine.amp import fall_back_to_fp32_without_gpu
from deepmim_mm.engine.config_checks import (ALLOW_NEW_FLAG, check_cfg_options, check_hook_args,
                                             check_input_size, check_work_dir)
from deepmim_mm.engine.launcher import check_launcher_env, finish_distributed, init_cpu_distributed


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If specify checkpoint path, resume from it, while if not '
        'specify, try to auto resume from the latest checkpoint '
        'in the work directory.')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='whether not to evaluate the checkpoint during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='whether to auto scale the learning rate according to the '
        'actual batch size and the original batch size.')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='whether to disable the pin_memory option in dataloaders.')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='whether to disable the persistent_workers option in dataloaders.'
    )
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
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    cfg.launcher = args.launcher

    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        # update configs according to CLI args if args.work_dir is not None
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        # use config filename as default work_dir if cfg.work_dir is None
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    # enable automatic-mixed-precision training
    if args.amp is True:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    # resume training
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    # enable auto scale learning rate
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True

    # set dataloader args
    default_dataloader_cfg = ConfigDict(
        pin_memory=True,
        persistent_workers=True,
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
        if args.no_persistent_workers:
            cfg[field]['persistent_workers'] = False

    set_default_dataloader_cfg(cfg, 'train_dataloader')
    set_default_dataloader_cfg(cfg, 'val_dataloader')
    set_default_dataloader_cfg(cfg, 'test_dataloader')

    if args.cfg_options is not None:
        check_cfg_options(cfg, args.cfg_options, args.allow_new_keys)
        cfg.merge_from_dict(args.cfg_options)

    fall_back_to_fp32_without_gpu(cfg)
    return cfg


def main():
    args = parse_args()
    check_launcher_env(args.launcher)
    apply_compat_fixes()

    # load config
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)

    if args.resume not in (None, 'auto') and not osp.isfile(args.resume):
        raise FileNotFoundError(f'--resume {args.resume}: no such checkpoint file (give a '
                                'checkpoint, or --resume alone for the latest one of the work '
                                'dir)')

    # merge cli arguments to config
    cfg = merge_args(cfg, args)
    check_work_dir(cfg.work_dir, resume=args.resume == 'auto')
    check_hook_args(cfg)
    check_input_size(cfg)
    init_cpu_distributed(cfg, args.launcher)

    # build the runner from config
    if 'runner_type' not in cfg:
        # build the default runner
        runner = Runner.from_cfg(cfg)
    else:
        # build customized runner from the registry
        # if 'runner_type' is set in the cfg
        runner = RUNNERS.build(cfg)

    runner.register_hook(dict(type='ResumeCheckHook'))

    # start training
    try:
        runner.train()
    finally:
        finish_distributed()


if __name__ == '__main__':
    main()
