# Copyright (c) OpenMMLab. All rights reserved.
# mmpretrain 1.2.0's tools/train.py with deepmim_mm.utils' checks of overrides, hook arguments
# and --resume, data folders checked before they are scanned, gloo runs without CUDA and AMP
# configs in fp32 without a GPU.
from deepmim_mm.datasets import check_data_folders
from deepmim_mm.utils import (apply_cfg_options, build_runner, check_hook_args,
                              fall_back_to_fp32_without_gpu, read_runner_config,
                              record_for_torchrun, run, runner_arg_parser)


def parse_args(argv=None):
    parser = runner_arg_parser('Train a model', 'train config file path')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or (no value) from the latest one in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate the checkpoint during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual over the original batch size')
    parser.add_argument('--no-persistent-workers', action='store_true',
                        help='disable the persistent_workers option of the dataloaders')
    return parser.parse_args(argv)


@record_for_torchrun
def main(argv=None):
    args = parse_args(argv)
    cfg = read_runner_config(args, ('train_dataloader', 'val_dataloader', 'test_dataloader'),
                             persistent_workers=not args.no_persistent_workers)
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume is not None:
        cfg.resume = True
        cfg.load_from = None if args.resume == 'auto' else args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    apply_cfg_options(cfg, args.cfg_options, args.allow_new_keys)
    fall_back_to_fp32_without_gpu(cfg)
    check_hook_args(cfg)
    check_data_folders(cfg, ('train_dataloader', 'val_dataloader'))

    runner = build_runner(cfg, resume=args.resume == 'auto')
    runner.register_hook(dict(type='ResumeCheckHook'))
    run(runner, 'train')


if __name__ == '__main__':
    main()
