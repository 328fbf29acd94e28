"""Argument handling of tools/dist_train.sh (single and multi node), tools/slurm_train.sh and
tools/slurm_test.sh.

``PYTHON`` and ``SRUN`` point at fake executables that print their arguments, so the command lines
the scripts build are checked exactly, without launching anything.
"""
import os
import os.path as osp
import stat
import subprocess

import pytest

from conftest import ROOT

FAKE = '''#!/usr/bin/env bash
for a in "$@"; do echo "ARG $a"; done
echo "PYTHONPATH $PYTHONPATH"
'''


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / 'fake'
    path.write_text(FAKE)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def run(script, args, env):
    full = {k: v for k, v in os.environ.items()
            if k not in ('NNODES', 'NODE_RANK', 'MASTER_ADDR', 'PORT', 'GPUS', 'GPUS_PER_NODE',
                         'CPUS_PER_TASK', 'SRUN_ARGS', 'SRUN', 'PYTHON')}
    full.update(env)
    return subprocess.run(['bash', osp.join('tools', script), *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=60)


def argv(proc):
    assert proc.returncode == 0, proc.stderr
    return [line[4:] for line in proc.stdout.splitlines() if line.startswith('ARG ')]


def test_dist_train_single_node_defaults(fake):
    proc = run('dist_train.sh', ['cfg.py', '4', '--work-dir', 'w', '--resume'],
               {'PYTHON': fake})
    assert argv(proc) == [
        '-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
        '--master_addr=127.0.0.1', '--nproc_per_node=4', '--master_port=29500',
        osp.join(ROOT, 'tools', 'train.py'), 'cfg.py', '--launcher', 'pytorch',
        '--work-dir', 'w', '--resume']
    assert f'PYTHONPATH {osp.join(ROOT, "tools")}/..' in proc.stdout


def test_dist_train_multi_node(fake):
    env = {'PYTHON': fake, 'NNODES': '2', 'NODE_RANK': '1', 'MASTER_ADDR': '10.0.0.1',
           'PORT': '12345'}
    args = argv(run('dist_train.sh', ['cfg.py', '8', '--cfg-options', 'a=1 b=2'], env))
    assert args[:7] == ['-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1',
                        '--master_addr=10.0.0.1', '--nproc_per_node=8', '--master_port=12345']
    assert args[8:] == ['cfg.py', '--launcher', 'pytorch', '--cfg-options', 'a=1 b=2']


@pytest.mark.parametrize('args,message', [
    (['cfg.py'], 'usage:'),
    (['cfg.py', 'two'], "GPUS must be a positive integer, got 'two'"),
    (['cfg.py', '0'], "GPUS must be a positive integer, got '0'"),
])
def test_dist_train_bad_arguments(fake, args, message):
    proc = run('dist_train.sh', args, {'PYTHON': fake})
    assert proc.returncode == 2
    assert message in proc.stderr
    assert 'ARG' not in proc.stdout  # nothing launched


def test_slurm_train_defaults(fake):
    proc = run('slurm_train.sh', ['part', 'job', 'cfg.py', 'work', '--resume'],
               {'SRUN': fake, 'PYTHON': 'py'})
    assert argv(proc) == [
        '-p', 'part', '--job-name=job', '--gres=gpu:8', '--ntasks=8', '--ntasks-per-node=8',
        '--cpus-per-task=5', '--kill-on-bad-exit=1', 'py', '-u',
        osp.join(ROOT, 'tools', 'train.py'), 'cfg.py', '--work-dir=work', '--launcher=slurm',
        '--resume']


def test_slurm_train_multi_node_and_srun_args(fake):
    env = {'SRUN': fake, 'PYTHON': 'py', 'GPUS': '16', 'GPUS_PER_NODE': '8',
           'CPUS_PER_TASK': '10', 'SRUN_ARGS': '--quotatype=auto --time=1:00:00'}
    args = argv(run('slurm_train.sh', ['p', 'j', 'c.py', 'w'], env))
    assert '--ntasks=16' in args and '--ntasks-per-node=8' in args
    assert '--gres=gpu:8' in args and '--cpus-per-task=10' in args
    # SRUN_ARGS are split into separate srun arguments, before the program.
    i = args.index('--quotatype=auto')
    assert args[i + 1] == '--time=1:00:00' and args[i + 2] == 'py'


def test_slurm_test_defaults_and_test_args(fake):
    proc = run('slurm_test.sh', ['part', 'job', 'cfg.py', 'ckpt.pth', '--show-dir', 'vis',
                                 '--tta'], {'SRUN': fake, 'PYTHON': 'py'})
    assert argv(proc) == [
        '-p', 'part', '--job-name=job', '--gres=gpu:8', '--ntasks=8', '--ntasks-per-node=8',
        '--cpus-per-task=5', '--kill-on-bad-exit=1', 'py', '-u',
        osp.join(ROOT, 'tools', 'test.py'), 'cfg.py', 'ckpt.pth', '--launcher=slurm',
        '--show-dir', 'vis', '--tta']
    assert f'PYTHONPATH {osp.join(ROOT, "tools")}/..' in proc.stdout


def test_slurm_test_multi_node(fake):
    env = {'SRUN': fake, 'PYTHON': 'py', 'GPUS': '16', 'CPUS_PER_TASK': '10',
           'SRUN_ARGS': '--quotatype=auto'}
    args = argv(run('slurm_test.sh', ['p', 'j', 'c.py', 'k.pth'], env))
    assert '--ntasks=16' in args and '--ntasks-per-node=8' in args
    assert '--cpus-per-task=10' in args and args[args.index('--quotatype=auto') + 1] == 'py'


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
@pytest.mark.parametrize('env,message', [
    ({}, 'usage:'),
    ({'GPUS': 'x'}, "GPUS must be a positive integer, got 'x'"),
    ({'GPUS_PER_NODE': '0'}, "GPUS_PER_NODE must be a positive integer, got '0'"),
    ({'CPUS_PER_TASK': '4x'}, "CPUS_PER_TASK must be a positive integer, got '4x'"),
])
def test_slurm_bad_arguments(fake, script, env, message):
    args = ['p', 'j', 'c.py'] if message == 'usage:' else ['p', 'j', 'c.py', 'w']
    proc = run(script, args, dict(env, SRUN=fake))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert 'ARG' not in proc.stdout
