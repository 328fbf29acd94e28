"""Importing deepmim_mm registers the pretraining models and pulls in neither mmseg nor mmdet."""
import subprocess
import sys


def test_import_registers_models_without_dense_task_libraries():
    code = ('import sys, deepmim_mm\n'
            'from mmpretrain.registry import MODELS\n'
            'for name in ("DeepMIM", "DeepMIMViT", "MultiLevelDecoder", "DeepMIMHead"):\n'
            '    assert MODELS.get(name) is not None, name\n'
            'bad = sorted(m for m in sys.modules if m.split(".")[0] in ("mmseg", "mmdet"))\n'
            'assert not bad, bad\n'
            'import mmdet.models  # still importable afterwards\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
