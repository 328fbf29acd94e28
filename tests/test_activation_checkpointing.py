"""mmengine's Runner key ``activation_checkpointing`` on the DeepMIM model: the auxiliary decoders
and the encoder blocks recompute their activations in backward instead of keeping them, and the
training step is the same (docs/en/notes/activation-memory.md measures what it saves)."""
import glob
import json
import os.path as osp

import pytest
import torch

from conftest import losses, make_data, run_main, tiny_config

MODULES = ['neck.aux_decoders.0', 'backbone.layers.0', 'backbone.layers.1']
# SGD with lr 1 and nothing else: the weights after one step are the initial ones minus the
# gradients, so equal weights mean equal gradients (a parameter left without one stays unchanged).
ONE_SGD_STEP = '''
_base_ = {base!r}
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='SGD', lr=1.0))
activation_checkpointing = {modules!r}
'''


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ac')
    return tiny_config(tmp / 'tiny.py', make_data(tmp), iters=1, ckpt=1), tmp


def train_one_step(tiny, modules):
    base, tmp = tiny
    config, work = tmp / f'ac{len(modules)}.py', tmp / f'work{len(modules)}'
    config.write_text(ONE_SGD_STEP.format(base=base, modules=modules or None))
    assert run_main('tools/train.py', config, '--work-dir', work) == 0
    [log] = glob.glob(osp.join(work, '*', '*.log'))
    state = torch.load(work / 'iter_1.pth', weights_only=False)['state_dict']
    return losses(work)[1], state, open(log).read()


def test_checkpointed_step_equals_the_plain_one(tiny):
    plain_losses, plain, _ = train_one_step(tiny, [])
    got_losses, got, log = train_one_step(tiny, MODULES)
    assert f'"activation_checkpointing" feature for sub-modules: {MODULES}' in log
    assert set(got_losses) == set(plain_losses) and len(plain_losses) >= 3  # levels + total
    for key, value in plain_losses.items():
        assert got_losses[key] == pytest.approx(value, rel=1e-6), key
    assert any(k.startswith('neck.aux_decoders.0.') for k in plain)
    for key, value in plain.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-6, msg=key)


def test_activation_memory_tool_counts_less_when_checkpointed(tiny):
    base, tmp = tiny
    out = tmp / 'memory.json'
    assert run_main('tools/analysis/activation_memory.py', base, '--checkpoint',
                    'neck.aux_decoders.*', 'backbone.layers.*', '--json', out) == 0
    rows = {row['checkpoint']: row for row in json.load(open(out))}
    assert rows['backbone.layers.*']['modules'] == MODULES[1:]
    assert rows['all']['modules'] == MODULES
    plain = rows['-']['bytes']
    assert 0 < rows['all']['bytes'] < min(rows['neck.aux_decoders.*']['bytes'],
                                          rows['backbone.layers.*']['bytes']) < plain
