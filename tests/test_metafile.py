"""The model zoo files agree with the file tree, the configs and upstream.

- ``model-index.yml`` imports every ``configs/**/metafile.yml``; every config outside ``_base_``
  is some model's ``Config`` (a config added without an entry fails here), and every ``Config``
  exists; model and collection names are unique; the fields OpenMMLab's model zoos use are there.
- Metadata matches the config: epochs / iterations, and the batch size ``<gpus>xb<per-gpu>`` of
  the file name, which must be the config's ``train_dataloader.batch_size``.
- A ``Same Recipe As`` upstream config (the source of a published figure) still equals ours.
- mmpretrain weights listed for a pretraining config fit its architecture key for key.
- ``tools/misc/metafile_stats.py`` counts MAE ViT-B as mmpretrain's model zoo does, and the
  metafile's counts for the demo are what it measures.
- Each per-task README has a row for every model of its metafile, with its counts, and names
  only paths that exist.
"""
import functools
import glob
import importlib
import importlib.util
import os.path as osp
import re

import pytest
import torch
import yaml
from mmengine.config import Config

from conftest import ROOT

INDEX = osp.join(ROOT, 'model-index.yml')
CONFIG_DIRS = ('pretrain', 'classification', 'segmentation', 'detection')
DEMO = 'deepmim_vit-tiny-p16_1xb8-coslr-20e_demo'
# Keys that say how a config loads the plugin's checkpoints or runs, not what it trains: ignored
# when a config is compared with the upstream one whose published figure it carries. (mmseg's
# MAE config keeps mmcv 1.x's `fp16 = dict(loss_scale='dynamic')`, which mmseg 1.x ignores; ours
# uses mmengine's AmpOptimWrapper, as its log's run did. The plugin's AtomicCheckpointHook saves
# the same checkpoints, crash-safely.)
RECIPE_IGNORED = re.compile(
    r'(^|\.)_scope_$|^custom_imports\.|^model\.backbone\.type$|^model\.backbone\.init_cfg\.'
    r'|^model\.pretrained$|^pretrained_checkpoint$|^fp16(\.|$)|^optim_wrapper\.(type|loss_scale)$'
    r'|^default_hooks\.checkpoint\.type$|^work_dir$')


@functools.lru_cache(maxsize=None)
def _config(path):
    """Each config loaded once per session (several models share one); callers only read it.
    Read as the plugin's tools read it: after the fixes for the stack (``mmseg::`` bases)."""
    from deepmim_mm.utils import load_config
    return load_config(path)


def _recipe(path):
    """The config as a flat dict, without the plugin's CheckpointMatchHook (it only checks what
    is loaded)."""
    cfg = _config(path).to_dict()
    hooks = [h for h in cfg.get('custom_hooks') or [] if h.get('type') != 'CheckpointMatchHook']
    if hooks:
        cfg['custom_hooks'] = hooks
    else:
        cfg.pop('custom_hooks', None)
    return _flat(cfg)


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _stats_module():
    spec = importlib.util.spec_from_file_location(
        'metafile_stats', osp.join(ROOT, 'tools', 'misc', 'metafile_stats.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STATS = _stats_module()  # tools/misc/metafile_stats.py: reads the index as mim does
_metafiles = STATS.metafiles_of_index


def _models():
    """``(metafile, model)`` for every model of the index."""
    return [(m, model) for m in _metafiles() for model in STATS.read_models(m)]


def _collections():
    return [c for m in _metafiles() for c in _load(m).get('Collections') or []]


def _upstream_config(spec):
    """``pkg::rel/path.py`` -> the file inside ``pkg/.mim/configs``."""
    pkg, rel = spec.split('::', 1)
    return osp.join(osp.dirname(importlib.import_module(pkg).__file__), '.mim', 'configs', rel)


def _flat(d, prefix=''):
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f'{prefix}.{k}' if prefix else str(k)))
        return out
    if isinstance(d, (list, tuple)):
        out = {}
        for i, v in enumerate(d):
            out.update(_flat(v, f'{prefix}.{i}'))
        return out
    return {prefix: d}


def test_model_index_imports_every_metafile():
    found = sorted(osp.relpath(p, ROOT)
                   for p in glob.glob(osp.join(ROOT, 'configs', '**', 'metafile.yml'),
                                      recursive=True))
    assert sorted(_load(INDEX)['Import']) == found
    assert found == [f'configs/{d}/metafile.yml' for d in sorted(CONFIG_DIRS)]


def test_every_config_is_listed_and_every_listed_config_exists():
    on_disk = {osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                                                       recursive=True)
               if '_base_' not in osp.relpath(p, ROOT).split(osp.sep)}
    listed = {model['Config'] for _, model in _models()}
    assert not on_disk - listed, (
        f'configs without a metafile entry (add one to configs/<task>/metafile.yml): '
        f'{sorted(on_disk - listed)}')
    assert not listed - on_disk, f'metafile entries without a config: {sorted(listed - on_disk)}'
    # `mim train deepmim_mm <name>.py` finds a config by its file name alone.
    names = [osp.basename(p) for p in on_disk]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_names_unique_and_fields_present():
    models = _models()
    names = [model['Name'] for _, model in models]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    collections = [c['Name'] for c in _collections()]
    assert len(collections) == len(set(collections)), collections
    for c in _collections():
        assert osp.isfile(osp.join(ROOT, c['README'])), c
        assert c.get('Metadata', {}).get('Training Data'), c
    for metafile, model in models:
        where = f'{osp.relpath(metafile, ROOT)}: {model.get("Name")}'
        meta = model['Metadata']
        assert meta.get('Epochs') or meta.get('Iterations'), where
        for field in ('Batch Size', 'FLOPs', 'Parameters'):
            assert isinstance(meta.get(field), int) and meta[field] > 0, (where, field)
        assert meta.get('Training Data'), where
        # mim search looks the collection up by this one name.
        assert isinstance(model['In Collection'], str), where
        assert model['In Collection'] in collections, where
        assert model['Config'].startswith(f'configs/{osp.basename(osp.dirname(metafile))}/')
        assert model.get('Weights') is None or model['Weights'].startswith('https://'), where
        results = model.get('Results')
        downstream = '/pretrain/' not in metafile
        if results is None:
            # No published figure: a downstream model says why.
            assert not downstream or model.get('Results Source', '').startswith('none'), where
        else:
            assert results and all({'Task', 'Dataset', 'Metrics'} <= set(r) for r in results)
            assert model.get('Results Source') and not model['Results Source'].startswith(
                'none'), (where, 'a published figure names its source')
        refs = list(model.get('Downstream', []))
        if meta.get('Pretrained'):
            refs.append(meta['Pretrained'])
        for other in refs:
            assert other in names, (where, other)


def test_metadata_matches_the_configs():
    for _, model in _models():
        cfg = _config(osp.join(ROOT, model['Config']))
        meta, name = model['Metadata'], model['Name']
        gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)', model['Config']).groups())
        assert cfg.train_dataloader.batch_size == per_gpu, name
        assert meta['Batch Size'] == gpus * per_gpu, name
        if 'Iterations' in meta:
            assert cfg.train_cfg.max_iters == meta['Iterations'], name
        else:
            assert cfg.train_cfg.max_epochs == meta['Epochs'], name


def test_same_recipe_as_the_upstream_config_of_the_published_figure():
    pairs = {(m['Config'], m['Same Recipe As']) for _, m in _models() if 'Same Recipe As' in m}
    assert len(pairs) >= 5
    for ours, theirs in sorted(pairs):
        a = _recipe(osp.join(ROOT, ours))
        b = _recipe(_upstream_config(theirs))
        diff = sorted(k for k in set(a) | set(b)
                      if not RECIPE_IGNORED.search(k) and a.get(k, '<absent>') != b.get(
                          k, '<absent>'))
        assert not diff, f'{ours} differs from {theirs}: ' + '; '.join(
            f'{k}: {a.get(k, "<absent>")!r} vs {b.get(k, "<absent>")!r}' for k in diff[:10])


def _state_shapes(cfg_path):
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(cfg_path)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.usefixtures('mmpretrain_scope')
def test_mmpretrain_weights_fit_the_config_key_for_key():
    import deepmim_mm  # noqa: F401
    listed = [m for _, m in _models() if (m.get('Weights') or '').startswith(
        'https://download.openmmlab.com/')]
    assert len(listed) >= 7
    checked = set()
    for model in listed:
        # Same architecture for every schedule: compare each distinct model once.
        arch = re.sub(r'-\d+e_', '-E_', model['Name'])
        if arch in checked:
            continue
        checked.add(arch)
        method = model['Name'].split('_')[0]
        ours = _state_shapes(osp.join(ROOT, model['Config']))
        theirs = _state_shapes(_upstream_config(f'mmpretrain::{method}/{model["Name"]}.py'))
        assert ours == theirs, (model['Name'], sorted(set(ours) ^ set(theirs))[:10])
    assert len(checked) == 3  # MAE ViT-B, MAE ViT-L, MFF ViT-B


def test_stats_count_mae_vit_base_as_mmpretrain_does():
    """Same convention as mmpretrain's model zoo: its MAE ViT-B entry's FLOPs and parameters."""
    name = 'mae_vit-base-p16_8xb512-amp-coslr-300e_in1k'
    upstream = osp.join(osp.dirname(_upstream_config('mmpretrain::mae/x')), 'metafile.yml')
    meta = next(m['Metadata'] for m in _load(upstream)['Models'] if m['Name'] == name)
    assert STATS.complexity(osp.join(ROOT, 'configs', 'pretrain', f'{name}.py')) == (
        meta['FLOPs'], meta['Parameters'])


def test_stats_check_and_update_the_demo_entry(tmp_path, capsys):
    metafile = osp.join(ROOT, 'configs', 'pretrain', 'metafile.yml')
    STATS.main([metafile, '--models', DEMO, '--check'])  # exits 1 on a difference
    meta = next(m['Metadata'] for m in STATS.read_models(metafile) if m['Name'] == DEMO)
    flops, params = meta['FLOPs'], meta['Parameters']  # = the counts: --check passed
    stale = STATS.update_text(open(metafile).read(), DEMO, 1, 2)
    copy = tmp_path / 'metafile.yml'
    copy.write_text(stale)
    with pytest.raises(SystemExit):
        STATS.main([str(copy), '--models', DEMO, '--check'])
    STATS.main([str(copy), '--models', DEMO, '--update'])
    assert copy.read_text() == open(metafile).read()
    assert f'{flops:>16}{params:>14}' in capsys.readouterr().out


def test_task_readmes_name_every_model_and_existing_paths():
    for task in CONFIG_DIRS:
        readme = open(osp.join(ROOT, 'configs', task, 'README.md')).read()
        rows = {line.split('`')[1]: line for line in readme.splitlines()
                if line.startswith('| `')}
        for model in _load(osp.join(ROOT, 'configs', task, 'metafile.yml'))['Models']:
            row = rows.get(model['Name'])
            assert row, (task, model['Name'], 'no row in the README table')
            meta = model['Metadata']
            # The README's Params (M) and FLOPs (G) are the metafile's counts.
            assert f'| {meta["Parameters"] / 1e6:.2f} | {meta["FLOPs"] / 1e9:.2f} |' in row, row
        for path in re.findall(r'\b((?:configs|tools|deepmim_mm)/[\w./-]+\.(?:py|sh|yml|md))',
                               readme):
            assert osp.exists(osp.join(ROOT, path)), (task, path)
        for link in re.findall(r'\]\(([^)#\s]+)\)', readme):
            if not link.startswith(('http://', 'https://')):
                assert osp.exists(osp.join(ROOT, 'configs', task, link)), (task, link)
