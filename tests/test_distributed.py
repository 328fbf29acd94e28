"""tools/dist_train.sh on the CPU (gloo, 2 processes) against one process, same global batch;
and the faults of one rank (an exception, SIGKILL) named at the end of what the others print.

What can match exactly: DefaultSampler gives rank r the samples ``perm[r::2]``, so the two ranks'
batches of b together are the single process's batch of 2b; DDP averages the gradients, and the
head's loss is a mean over masked patches with the same number per image, so the global-batch loss
is the mean of the two ranks' losses. What cannot: the random masks (and random crops), which are
drawn per process from its own RNG stream — a 2-process run never draws the same masks as a
1-process run. The exact comparison therefore uses a deterministic resize and a test-only encoder
whose mask is a function of the image content; then the per-iteration loss of the single process
equals the mean of the two ranks' losses up to float32 reduction order (tolerance 1e-4
relative, measured: 1.1e-7). The FSDP test trains with the ordinary random masks.
"""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from conftest import (DEMO, ROOT, free_port, losses, make_data, run_main, tiny_config,
                      with_pythonpath)

PLUGIN = '''
import json, os
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS, MODELS
from deepmim_mm.models.backbones.deepmim_vit import DeepMIMViT


@MODELS.register_module()
class ContentMaskViT(DeepMIMViT):
    """Test only: the mask depends on the image content, not on the process's RNG."""

    def random_masking(self, x, mask_ratio=0.75):
        N, L, D = x.shape
        len_keep = int(L * (1 - mask_ratio))
        noise = x.detach().float().sum(-1)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, D))
        mask = torch.ones([N, L], device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask, ids_restore


@HOOKS.register_module()
class DumpRankLosses(Hook):
    """Test only: every rank writes its own per-iteration losses (mmengine logs rank 0's)."""

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        path = os.path.join(runner.work_dir, f'losses_rank{get_rank()}.jsonl')
        with open(path, 'a') as f:
            f.write(json.dumps(dict(iter=runner.iter + 1, wrapper=type(runner.model).__name__, **{
                k: float(v) for k, v in outputs.items() if k.startswith('loss')})) + '\\n')
'''

EXACT = '''
model['backbone']['type'] = 'ContentMaskViT'
train_dataloader['dataset']['pipeline'] = [
    dict(type='LoadImageFromFile'), dict(type='Resize', scale=(32, 32)), dict(type='PackInputs')]
custom_hooks.append(dict(type='DumpRankLosses'))
'''


def dist_train(cfg, work, nproc, plugin_dir, check=True):
    full_env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable,
                    PORT=str(free_port()), **with_pythonpath(plugin_dir))
    proc = subprocess.run(['bash', 'tools/dist_train.sh', cfg, str(nproc), '--work-dir', work],
                          cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        pytest.fail(f'dist_train.sh exited {proc.returncode}\n{proc.stdout[-5000:]}\n'
                    f'{proc.stderr[-5000:]}')
    return proc


def rank_losses(work, rank):
    with open(osp.join(work, f'losses_rank{rank}.jsonl')) as f:
        records = [json.loads(line) for line in f]
    return {r['iter']: {k: v for k, v in r.items() if k.startswith('loss')} for r in records}


def wrappers(work, rank):
    with open(osp.join(work, f'losses_rank{rank}.jsonl')) as f:
        return {json.loads(line)['wrapper'] for line in f}


def test_two_gloo_processes_match_one_process(tmp_path, monkeypatch):
    data = make_data(tmp_path)  # 12 images
    (tmp_path / 'dist_plugin.py').write_text(PLUGIN)
    iters = 6
    cfg2 = tiny_config(tmp_path / 'two.py', data, iters=iters, ckpt=iters, batch=2,
                       extra_imports=['dist_plugin'], extra_hooks=EXACT)
    cfg1 = tiny_config(tmp_path / 'one.py', data, iters=iters, ckpt=iters, batch=4,
                       extra_imports=['dist_plugin'], extra_hooks=EXACT)
    two, one = str(tmp_path / 'two'), str(tmp_path / 'one')
    proc = dist_train(cfg2, two, 2, tmp_path)
    assert 'Distributed launcher: pytorch' in proc.stdout + proc.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run_main('tools/train.py', cfg1, '--work-dir', one) == 0

    r0, r1, single = rank_losses(two, 0), rank_losses(two, 1), rank_losses(one, 0)
    assert sorted(r0) == sorted(r1) == sorted(single) == list(range(1, iters + 1))
    assert r0[1] != r1[1]  # the ranks saw different images
    worst = 0.0
    for it in single:
        for key, value in single[it].items():
            mean = (r0[it][key] + r1[it][key]) / 2
            assert mean == pytest.approx(value, rel=1e-4), (it, key, mean, value)
            worst = max(worst, abs(mean - value) / abs(value))
    print(f'2 x gloo vs 1 process: largest relative loss difference {worst:.1e}')
    # Rank 0 alone wrote the checkpoint and the logs.
    assert osp.isfile(osp.join(two, f'iter_{iters}.pth'))
    assert sorted(losses(two)) == list(range(1, iters + 1))


FSDP_CONFIG = osp.join(ROOT, 'configs', 'pretrain',
                       'deepmim_vit-large-p16_8xb512-amp-fsdp-coslr-1600e_in1k.py')


def test_fsdp_config_trains_tiny_model_on_cpu(tmp_path, mmpretrain_scope):
    """The ViT-L FSDP config (FlexibleRunner + FSDPStrategy), shrunk, on 2 gloo processes."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    import deepmim_mm  # noqa: F401

    data = make_data(tmp_path, n_per_class=2)
    (tmp_path / 'dist_plugin.py').write_text(PLUGIN)
    # The tiny model is ~100k parameters: wrap every >= 1000-parameter module as its own unit.
    extra = """
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
strategy = dict(model_wrapper=dict(auto_wrap_policy=dict(min_num_params=1000)))
custom_hooks.append(dict(type='DumpRankLosses'))
"""
    # diff_rank_seed: each rank draws its own random masks and RNG stream.
    cfg = tiny_config(tmp_path / 'fsdp.py', data, iters=4, ckpt=2, diff_rank=True,
                      extra_imports=['dist_plugin'], extra_hooks=extra)
    text = open(cfg).read().replace(repr(DEMO), repr(FSDP_CONFIG))
    open(cfg, 'w').write(text)
    work = str(tmp_path / 'fsdp')
    dist_train(cfg, work, 2, tmp_path)
    assert wrappers(work, 0) == wrappers(work, 1) == {'MMFullyShardedDataParallel'}
    r0, r1 = rank_losses(work, 0), rank_losses(work, 1)
    assert sorted(r0) == sorted(r1) == [1, 2, 3, 4]
    assert all(0 < v < 10 for r in (r0, r1) for rec in r.values() for v in rec.values())
    # The checkpoint is a full state dict in the usual format: it loads, strictly, into the
    # same model built without FSDP.
    ckpt = torch.load(osp.join(work, 'iter_4.pth'), weights_only=False)
    model = MODELS.build(Config.fromfile(cfg, import_custom_modules=False).model)
    model.load_state_dict(ckpt['state_dict'], strict=True)
    # Exact resume across processes: every rank's RNG state is in the checkpoint.
    assert len(ckpt['rng_state']) == 2
    assert not torch.equal(ckpt['rng_state'][0]['torch'], ckpt['rng_state'][1]['torch'])


# ------------------------------------------------------------------------------------------
# The fault of one rank, named last
# ------------------------------------------------------------------------------------------
def last_line(text):
    """The last line of ``text`` that is not a rule of '=' or '-' (torchrun's summary)."""
    return [line for line in text.splitlines() if line.strip('=- ')][-1]


def test_failing_rank_names_its_cause_last(tmp_path):
    """A corrupt image met by one rank: torchrun's summary ends with that rank and its error
    (the worker records it for torchrun), not with 'error_file: <N/A>' 40 lines below it."""
    data = make_data(tmp_path)  # 12 images: 3 iterations of 2 x 2 meet every one
    bad = osp.join(data, 'class1', '2.JPEG')
    with open(bad, 'wb') as f:
        f.write(b'not an image')
    checked = "train_dataloader['dataset']['pipeline'][0] = dict(type='LoadImageFromFileChecked')"
    cfg = tiny_config(tmp_path / 'bad.py', data, iters=3, ckpt=3, extra_hooks='\n' + checked)
    proc = dist_train(cfg, str(tmp_path / 'work'), 2, tmp_path, check=False)
    assert proc.returncode != 0
    root_cause = proc.stderr.split('Root Cause')[-1]
    assert re.search(r'rank\s+: [01] \(local_rank: [01]\)', root_cause), root_cause
    assert f'cannot decode image {bad}' in last_line(proc.stderr), proc.stderr[-3000:]


KILL_RANK = '''
import os, signal
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class KillRankAtIter(Hook):
    """Test only: SIGKILL rank ``rank`` after iteration ``at`` (1-based)."""

    def __init__(self, rank, at):
        self.rank, self.at = rank, at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at and get_rank() == self.rank:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def test_killed_rank_is_named_by_the_survivor(tmp_path):
    """Rank 1 SIGKILLed, as two one-process nodes (tools/dist_train.sh with NNODES=2): the
    killed rank's torchrun cannot stop the survivor, which must not hang and ends naming rank 1
    (gloo's own error names an address: 'Connection reset by peer [127.0.0.1]:61662')."""
    (tmp_path / 'kill_rank.py').write_text(KILL_RANK)
    extra = ("\ncustom_hooks.append(dict(type='KillRankAtIter', rank=1, at=2))"
             "\nenv_cfg = dict(dist_cfg=dict(backend='gloo', timeout=20))")
    cfg = tiny_config(tmp_path / 'kill.py', make_data(tmp_path, n_per_class=2), iters=4,
                      ckpt=4, extra_imports=['kill_rank'], extra_hooks=extra)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable, PORT=str(free_port()),
               NNODES='2', **with_pythonpath(tmp_path))
    procs = []
    for node in (1, 0):
        err = open(tmp_path / f'node{node}.err', 'w')
        procs.append(subprocess.Popen(
            ['bash', 'tools/dist_train.sh', cfg, '1', '--work-dir', str(tmp_path / 'work')],
            cwd=ROOT, env=dict(env, NODE_RANK=str(node)), stdout=subprocess.DEVNULL,
            stderr=err))
        err.close()
    try:
        codes = [p.wait(timeout=300) for p in procs]  # a guard against a hang, not a timing
    finally:
        for p in procs:
            p.kill()
    killed, survivor = ((tmp_path / f'node{n}.err').read_text() for n in (1, 0))
    assert codes[0] != 0 and 'Signal 9 (SIGKILL)' in killed, killed[-2000:]
    assert codes[1] != 0
    assert 'rank 0 of 2: rank 1 stopped answering' in last_line(survivor), survivor[-3000:]


def test_slurm_launcher_starts_a_cpu_group_from_slurm_variables(monkeypatch):
    """`--launcher slurm` without CUDA: the gloo group is set up from Slurm's variables (one
    task here), as mmengine's _init_dist_slurm does on GPUs."""
    import torch.distributed as dist
    from mmengine.config import Config

    from deepmim_mm.utils.launcher import init_cpu_distributed
    for var in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_PORT'):  # restored after the test
        monkeypatch.setenv(var, '')
        monkeypatch.delenv(var)
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('SLURM_PROCID', '0')
    monkeypatch.setenv('SLURM_NTASKS', '1')
    monkeypatch.setenv('SLURM_NODELIST', 'localhost')
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='gloo', port=free_port()))))
    init_cpu_distributed(cfg, 'slurm')
    try:
        assert dist.get_backend() == 'gloo' and dist.get_world_size() == 1
        assert os.environ['RANK'] == '0' and cfg.model_wrapper_cfg['device_ids'] is None
    finally:
        dist.destroy_process_group()
    assert 'RANK' in os.environ  # set by the launcher code, removed by monkeypatch afterwards
    with pytest.raises(ValueError, match='--launcher mpi on a machine without CUDA'):
        init_cpu_distributed(cfg, 'mpi')
