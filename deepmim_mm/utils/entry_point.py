"""What tools/train.py and tools/test.py share: arguments, config reading, running the Runner."""
import argparse
import os
import os.path as osp

import torch.distributed as dist
from mmengine.config import ConfigDict, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .config_checks import ALLOW_NEW_FLAG, check_work_dir, load_config
from .launcher import check_launcher_env, init_cpu_distributed, name_lost_ranks


def add_cfg_options(parser) -> None:
    """``--cfg-options`` and ``--allow-new-keys``, as every tool of the plugin takes them."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config: key=value pairs merged into it; key="[a,b]" or '
        'key=a,b for lists, key="[(a,b),(c,d)]" for nested lists/tuples; quote the value, no '
        f'white space; a key the config does not have is an error unless {ALLOW_NEW_FLAG}')
    parser.add_argument(ALLOW_NEW_FLAG, action='store_true',
                        help='let --cfg-options add keys the config does not have')


def runner_arg_parser(description: str, config_help: str) -> argparse.ArgumentParser:
    """A parser with the arguments both tools take: config, work dir, overrides, launcher."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('config', help=config_help)
    parser.add_argument('--work-dir', help='the dir to save logs, models and metrics')
    add_cfg_options(parser)
    parser.add_argument('--no-pin-memory', action='store_true',
                        help='disable the pin_memory option of the dataloaders')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def read_runner_config(args, dataloaders, **dataloader_defaults):
    """The config of ``args.config`` with the common arguments applied; each of ``dataloaders``
    gets ``dataloader_defaults`` (and mmpretrain's ``default_collate`` in its scope) unless it sets
    them, ``False`` ones forced."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    check_launcher_env(args.launcher)
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.work_dir is not None:  # CLI > the config's work_dir > the config's name
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    defaults = dict(pin_memory=not args.no_pin_memory, **dataloader_defaults)
    if cfg.get('default_scope', 'mmpretrain') == 'mmpretrain':
        defaults['collate_fn'] = dict(type='default_collate')
    for field in dataloaders:
        if cfg.get(field) is not None:
            loader = ConfigDict(defaults)
            loader.update(cfg[field])
            loader.update({k: v for k, v in defaults.items() if v is False})
            cfg[field] = loader
    return cfg


def build_runner(cfg, resume: bool = False):
    """The Runner of ``cfg`` (``runner_type``, or mmengine's ``Runner``), after the work dir is
    checked and, without CUDA, the gloo process group started."""
    check_work_dir(cfg.work_dir, resume=resume)
    init_cpu_distributed(cfg, cfg.launcher)
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)


def run(runner, method: str):
    """``runner.<method>()``, naming a rank that stopped answering; the process group is then
    destroyed, whatever happens (or gloo's threads are torn down unjoined at exit)."""
    try:
        return getattr(runner, method)()
    except RuntimeError as e:  # e.g. gloo's "Connection reset by peer": a rank was killed
        name_lost_ranks(e)
        raise
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
