"""Importing deepmim_mm (and .seg, .det, .classification, .apis, .analysis) registers modules and
changes nothing upstream: no attribute, class member, function code or default of any loaded
torch / mmengine / mmcv / mmpretrain / mmseg / mmdet / numpy module, no registry entry, builtin,
safe global, import hook, checkpoint scheme, config package name, environment variable, default
dtype, thread count or warning filter. It needs neither mmseg nor mmdet."""
import subprocess
import sys

_SNAPSHOT = '''
import builtins, inspect, logging, os, sys, types, warnings
warnings.filterwarnings('ignore')
import torch, torch._dynamo, torch.distributed.fsdp  # noqa: F401  (torch's own lazy effects)
import numpy, mmengine.runner, mmengine.hooks, mmengine.dataset, mmengine.model  # noqa: F401
import mmengine.optim, mmengine.fileio, mmengine.dist, mmcv.transforms, mmcv.image  # noqa: F401
import mmpretrain.models, mmpretrain.datasets, mmpretrain.evaluation, mmpretrain.apis  # noqa
import mmseg.models, mmseg.datasets, mmdet.models, mmdet.datasets, mmdet.evaluation  # noqa
from mmengine.registry import Registry
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.runner.checkpoint import CheckpointLoader
PREFIXES = ('torch', 'mmengine', 'mmcv', 'mmpretrain', 'mmseg', 'mmdet', 'numpy')

def ident(v):
    # a function counts as changed when its object, code or defaults change
    f = v.__func__ if isinstance(v, (types.MethodType, staticmethod, classmethod)) else v
    if isinstance(f, types.FunctionType):
        return (id(f), id(f.__code__), repr(f.__defaults__), repr(f.__kwdefaults__))
    return id(v)

def snap():
    attrs, registries = {}, {}
    for name, module in list(sys.modules.items()):
        if module is None or name.split('.')[0] not in PREFIXES:
            continue
        try:
            items = list(vars(module).items())
        except TypeError:
            continue
        for a, v in items:
            attrs[name + ':' + a] = ident(v)
            if inspect.isclass(v) and getattr(v, '__module__', None) == name:
                for k, w in list(vars(v).items()):
                    attrs[f'{name}:{a}.{k}'] = ident(w)
            if isinstance(v, Registry):
                registries[name + ':' + a] = {k: id(c) for k, c in v._module_dict.items()}
    for a, v in vars(builtins).items():
        attrs['builtins:' + a] = id(v)
    return attrs, registries

before, regs_before = snap()
state = (list(torch.serialization.get_safe_globals()), list(sys.meta_path), list(sys.path_hooks),
         dict(CheckpointLoader._schemes), dict(os.environ), torch.get_default_dtype(),
         torch.get_num_threads(), list(warnings.filters), dict(MODULE2PACKAGE))
import deepmim_mm, deepmim_mm.seg, deepmim_mm.det, deepmim_mm.classification  # noqa: F401,E401
import deepmim_mm.apis, deepmim_mm.analysis  # noqa: F401,E401
after, regs_after = snap()
changed = sorted(k for k in before if after.get(k) != before[k])
assert not changed, changed
overridden = sorted(f'{r}:{k}' for r, d in regs_before.items() for k in d
                    if regs_after.get(r, {}).get(k) != d[k])
assert not overridden, overridden
now = (list(torch.serialization.get_safe_globals()), list(sys.meta_path), list(sys.path_hooks),
       dict(CheckpointLoader._schemes), dict(os.environ), torch.get_default_dtype(),
       torch.get_num_threads(), list(warnings.filters), dict(MODULE2PACKAGE))
names = ('safe globals', 'meta_path', 'path_hooks', 'checkpoint schemes', 'environment',
         'default dtype', 'threads', 'warning filters', 'config packages')
assert now == state, [n for n, x, y in zip(names, state, now) if x != y]
# to a file: the fork's task libraries print to stdout on import
open(sys.argv[1], 'w').write(f'ok {len(before)} {len(regs_before)}')
'''


def test_import_changes_nothing_upstream(tmp_path):
    result = tmp_path / 'result'
    proc = subprocess.run([sys.executable, '-c', _SNAPSHOT, str(result)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Every loaded module of the stack was compared (attributes, class members, function code
    # and defaults) and every registry's entries, not a hand-picked list.
    ok, attrs, registries = result.read_text().split()
    assert ok == 'ok' and int(attrs) > 50000 and int(registries) > 100, result.read_text()


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
    # (Importable side by side with them: test_import_changes_nothing_upstream imports both.)
