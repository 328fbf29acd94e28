"""Shared pytest fixtures: tiny data written to tmp dirs, the repository root, a CPU-only guard."""
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_IMAGES = osp.join(ROOT, 'deepmim_mm', 'demo', 'images')

# Two cores on CI: keep torch from oversubscribing them when tests start subprocesses.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def write_imagenet_folder(root, num_classes=3, per_class=4, size=64, seed=0):
    """Write an ImageNet-style folder of real JPEG files: ``root/<class>/<n>.JPEG``.

    Class ``k`` images are smooth noise around a class-specific colour, so classes are separable
    by simple features. Returns ``root``.
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    for k in range(num_classes):
        d = osp.join(root, f'class{k}')
        os.makedirs(d, exist_ok=True)
        base = np.array([(k * 97) % 256, (k * 53 + 80) % 256, (k * 191 + 30) % 256], np.float32)
        for n in range(per_class):
            img = base + rng.normal(0, 25, (size, size, 3))
            img = np.clip(img, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(osp.join(d, f'{n}.JPEG'), quality=90)
    return root


def perturb_weights(model, seed=0, embeddings=()):
    """Random biases and LayerNorm affines (and the parameters whose name contains one of
    ``embeddings``), so no weight sits at a trivial value an equivalence test could not see."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith('bias'):
                p.copy_(0.1 * noise)
            elif 'ln' in name and name.endswith('weight'):
                p.copy_(1 + 0.2 * noise)
            elif any(e in name for e in embeddings):
                p.copy_(0.5 * noise)
    return model


@pytest.fixture
def one_thread():
    """One torch thread for the test: on a loaded 2-core machine, tiny matrices (probes, tiny
    ViTs) run several times faster than with two competing threads."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def imagenet_folder(tmp_path):
    """A tiny ImageNet-style folder of real JPEGs (3 classes x 4 images, 64 px)."""
    return write_imagenet_folder(str(tmp_path / 'imagenet'))


def free_port():
    """A free TCP port on localhost (for a torchrun rendezvous)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_tool(args, cwd=ROOT, env=None, timeout=900, check=True):
    """Run ``python <args>`` from the repository root and return the CompletedProcess.

    Fails the test with the tool's output when it exits non-zero (unless ``check=False``: then
    the caller asserts on the exit status).
    """
    full_env = dict(os.environ)
    full_env.setdefault('OMP_NUM_THREADS', '2')
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable] + list(args), cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f'{args} exited {proc.returncode}\nSTDOUT:\n{proc.stdout[-6000:]}\n'
                    f'STDERR:\n{proc.stderr[-6000:]}')
    return proc


def run_main(script, *argv, cwd=ROOT):
    """Run ``python <script> <argv>`` in this process and return its exit status.

    ``script`` is relative to the repository root (e.g. ``'tools/train.py'``); its folder goes
    first on ``sys.path`` as for a script started by the interpreter. Output goes to the test's
    ``capsys``/``capfd``. Use it wherever the process itself is not what is tested: it saves the
    interpreter start and the imports (seconds per call on 2 cores).
    """
    import runpy
    path = osp.join(ROOT, script)
    saved_argv, saved_path, saved_cwd = sys.argv, list(sys.path), os.getcwd()
    sys.argv = [path] + [str(a) for a in argv]
    sys.path.insert(0, osp.dirname(path))
    os.chdir(cwd)
    try:
        runpy.run_path(path, run_name='__main__')
    except SystemExit as e:  # as the interpreter does: a message goes to stderr, status 1
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
    return 0


@pytest.fixture
def mmpretrain_scope():
    """Build from registries in mmpretrain's scope, whatever scope an earlier test left current.

    (A Runner makes its ``default_scope`` the current one process-wide.)
    """
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


@pytest.fixture(autouse=True)
def _isolated_default_scope():
    """Give every test the process's default-scope state from before it ran.

    A Runner built in one test makes its ``default_scope`` current process-wide, so a later test
    building from ``mmpretrain.registry.MODELS`` would otherwise look in another library's
    registry (e.g. ``mmengine::model``) depending only on test order.
    """
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)
