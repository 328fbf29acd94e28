"""The process group of the plugin's entry points: gloo CPU processes without CUDA; a rank that
fails because another stopped answering names it."""
import datetime
import os
import subprocess
import time

import torch
import torch.distributed as dist

_ENV = {  # the variables a launcher sets, and how to start a run with it
    'pytorch': (('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
                'start it with tools/dist_train.sh CONFIG GPUS (or torchrun '
                '--nproc_per_node=GPUS tools/train.py CONFIG --launcher pytorch)'),
    'slurm': (('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
              'start it with tools/slurm_train.sh (srun) inside a Slurm allocation'),
}


def check_launcher_env(launcher: str) -> None:
    """A ``ValueError`` naming the missing variables when ``launcher`` did not start us."""
    variables, how = _ENV.get(launcher, ((), ''))
    missing = [v for v in variables if v not in os.environ]
    if missing:
        raise ValueError(f'--launcher {launcher}: the environment lacks {", ".join(missing)}, '
                         f'which the {launcher} launcher sets; {how}, or leave --launcher out for '
                         'one process')


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


def init_cpu_distributed(cfg, launcher: str) -> None:
    """Without CUDA, start the gloo process group of a ``--launcher pytorch`` or ``slurm`` run
    and set DDP / FSDP up for CPU modules; ``env_cfg.dist_cfg.backend`` must be ``gloo``."""
    if launcher == 'none' or torch.cuda.is_available() or dist.is_initialized():
        return
    if launcher not in _ENV:
        raise ValueError(f'--launcher {launcher} on a machine without CUDA: only pytorch and '
                         'slurm are supported')
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    backend = dist_cfg.pop('backend', 'nccl')
    if backend != 'gloo':
        raise ValueError(f'env_cfg.dist_cfg.backend={backend!r} needs GPUs and this machine has '
                         "none: set env_cfg.dist_cfg.backend='gloo' to run CPU processes")
    if launcher == 'slurm':
        _slurm_env(int(dist_cfg.pop('port', 29500)))
    if 'timeout' in dist_cfg:  # seconds, as mmengine's init_dist takes it
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
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


def record_for_torchrun(main):
    """``main`` under torch's ``record`` when torchrun asks for an error file
    (``TORCHELASTIC_ERROR_FILE``): its exception then ends torchrun's summary, with the rank."""
    if not os.environ.get('TORCHELASTIC_ERROR_FILE'):
        return main
    from torch.distributed.elastic.multiprocessing.errors import record
    return record(main)


class RankLostError(RuntimeError):
    """A collective failed because other ranks no longer answer (killed, crashed or hung)."""


def name_lost_ranks(error: BaseException, timeout: float = 10) -> None:
    """When ``error`` is a failure of the gloo transport, raise :class:`RankLostError` naming the
    ranks that do not answer a point-to-point probe within ``timeout`` seconds."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_backend() == 'gloo'
            and 'gloo/transport' in str(error)):
        return
    rank, deadline, lost = dist.get_rank(), time.monotonic() + timeout, []
    tag = 2**20 + 17  # not one of the Runner's own messages
    for peer in range(dist.get_world_size()):
        try:  # a dead peer's connection fails at once; a silent one at the deadline
            works = [dist.isend(torch.zeros(1), peer, tag=tag),
                     dist.irecv(torch.zeros(1), peer, tag=tag)] if peer != rank else []
            for work in works:
                work.wait(datetime.timedelta(seconds=max(deadline - time.monotonic(), 0.1)))
        except RuntimeError:
            lost.append(str(peer))
    if lost:
        raise RankLostError(f'rank {rank} of {dist.get_world_size()}: rank {", ".join(lost)} '
                            'stopped answering (killed, crashed or hung: see its log), which ended '
                            f'this rank with {type(error).__name__}: '
                            f'{str(error).strip().splitlines()[0]}') from error
