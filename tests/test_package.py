"""Importing deepmim_mm registers modules and changes nothing upstream; it needs neither mmseg nor
mmdet."""
import subprocess
import sys

_SNAPSHOT = '''
import importlib, inspect, sys, warnings
warnings.filterwarnings('ignore')
import torch, torch._dynamo, torch.distributed.fsdp  # noqa: F401  (torch's own lazy effects)
names = ['torch', 'torch.serialization', 'torch.cuda', 'torch.distributed', 'mmengine.runner',
         'mmengine.runner.checkpoint', 'mmengine.runner.runner', 'mmengine.hooks',
         'mmengine.hooks.checkpoint_hook', 'mmengine.dist', 'mmengine.dist.utils',
         'mmengine.model', 'mmengine.model.wrappers.distributed', 'mmengine.optim',
         'mmengine.optim.optimizer.default_constructor', 'mmengine.fileio', 'mmcv', 'mmcv.image',
         'mmpretrain.models', 'mmpretrain.evaluation', 'mmpretrain.datasets', 'mmseg.models',
         'mmseg.datasets', 'mmdet.models', 'mmdet.evaluation', 'mmdet.datasets', 'numpy']
def snap():
    out = {}
    for n in names:
        m = importlib.import_module(n)
        for a, v in list(vars(m).items()):
            out[n + '.' + a] = id(v)
            if inspect.isclass(v):
                for k, w in list(vars(v).items()):
                    out[n + '.' + a + '.' + k] = id(w)
    return out
before = snap()
safe = list(torch.serialization.get_safe_globals())
meta_path = list(sys.meta_path)
schemes = dict(__import__('mmengine.runner.checkpoint').runner.checkpoint.CheckpointLoader._schemes)
import deepmim_mm, deepmim_mm.seg, deepmim_mm.det  # noqa: F401,E401
after = snap()
changed = sorted(k for k in before if after.get(k) != before[k])
assert not changed, changed
assert list(torch.serialization.get_safe_globals()) == safe
assert list(sys.meta_path) == meta_path
from mmengine.runner.checkpoint import CheckpointLoader
assert dict(CheckpointLoader._schemes) == schemes
print('ok')
'''


def test_import_changes_nothing_upstream():
    proc = subprocess.run([sys.executable, '-c', _SNAPSHOT], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == 'ok', proc.stderr[-3000:]


def test_import_registers_models_without_dense_task_libraries():
    # mmseg and mmdet blocked: importing the plugin must not need them (mmpretrain itself
    # imports mmdet when it is installed, for its ResLayerExtraNorm; that is upstream's).
    code = ('import sys\n'
            'sys.modules["mmseg"] = sys.modules["mmdet"] = None\n'
            'import deepmim_mm\n'
            'from mmengine.registry import HOOKS\n'
            'from mmpretrain.registry import MODELS, TRANSFORMS\n'
            'for name in ("DeepMIM", "DeepMIMViT", "MultiLevelDecoder", "DeepMIMHead",\n'
            '             "CLIPTeacher", "MAEHybridTarget"):\n'
            '    assert MODELS.get(name) is not None, name\n'
            'assert TRANSFORMS.get("LoadImageFromFileChecked") is not None\n'
            'for name in ("AtomicCheckpointHook", "RNGStateHook", "NonFiniteLossHook",\n'
            '             "CheckpointMatchHook", "DeepMIMReconstructionHook"):\n'
            '    assert HOOKS.get(name) is not None, name\n'
            'bad = sorted(m for m in sys.modules if m.split(".")[0] in ("mmseg", "mmdet")\n'
            '             and sys.modules[m] is not None)\n'
            'assert not bad, bad\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, '-c', 'import deepmim_mm, mmdet.models, mmseg.models'],
                          capture_output=True, text=True)  # still importable side by side
    assert proc.returncode == 0, proc.stderr[-3000:]
