"""The process group of the plugin's entry points: gloo CPU processes without CUDA, destroyed
before the interpreter exits."""
import os
import subprocess

import torch
import torch.distributed as dist

_ENV = {
    'pytorch': ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
    'slurm': ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
}


def check_launcher_env(launcher: str) -> None:
    """A ``ValueError`` naming the missing variables when ``launcher`` did not start us."""
    missing = [v for v in _ENV.get(launcher, ()) if v not in os.environ]
    if not missing:
        return
    how = {
        'pytorch': 'start it with tools/dist_train.sh CONFIG GPUS (or torchrun '
                   '--nproc_per_node=GPUS tools/train.py CONFIG --launcher pytorch)',
        'slurm': 'start it with tools/slurm_train.sh (srun) inside a Slurm allocation',
    }[launcher]
    raise ValueError(f'--launcher {launcher}: the environment lacks {", ".join(missing)}, which '
                     f'the {launcher} launcher sets; {how}, or leave --launcher out for one '
                     'process')


def _slurm_env(port: int) -> None:
    """The variables ``env://`` needs, from Slurm's (as mmengine's ``_init_dist_slurm``)."""
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    os.environ.setdefault('MASTER_PORT', str(port))
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1')


def init_cpu_distributed(cfg, launcher: str) -> bool:
    """Start a gloo process group for a distributed launch on a machine without CUDA (returns
    whether it did), with DDP / FSDP set up for CPU modules; ``env_cfg.dist_cfg.backend`` must
    be ``gloo``."""
    if launcher == 'none' or torch.cuda.is_available() or dist.is_initialized():
        return False
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    backend = dist_cfg.pop('backend', 'nccl')
    if backend != 'gloo':
        raise ValueError(f'env_cfg.dist_cfg.backend={backend!r} needs GPUs and this machine has '
                         "none: set env_cfg.dist_cfg.backend='gloo' to run CPU processes")
    if launcher == 'slurm':
        _slurm_env(int(dist_cfg.pop('port', 29500)))
    elif launcher != 'pytorch':
        raise ValueError(f'--launcher {launcher} on a machine without CUDA: only pytorch and '
                         'slurm are supported')
    dist.init_process_group(backend='gloo', init_method='env://', **dist_cfg)
    if cfg.get('strategy') is not None:  # FlexibleRunner (FSDPStrategy)
        wrapper = dict(cfg.strategy.get('model_wrapper') or {})
        wrapper['device_id'] = torch.device('cpu')
        cfg.strategy['model_wrapper'] = wrapper
    else:
        wrapper = cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
    return True


def finish_distributed() -> None:
    """Destroy the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
