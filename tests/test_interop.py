"""Plain MAE and MFF expressed with this plugin's classes are mmpretrain's MAE and MFF.

The models are built from mmpretrain's own configs (shipped in its package) and from ours of the
same name: the upstream state_dict loads with no missing or unexpected keys, and the same input
with the same seed (hence the same mask) gives the same loss.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import deepmim_mm  # noqa: F401

pytestmark = pytest.mark.usefixtures('mmpretrain_scope')

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

PAIRS = [
    ('mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py',
     'configs/pretrain/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'),
    ('mmpretrain::mff/mff_vit-base-p16_8xb512-amp-coslr-300e_in1k.py',
     'configs/pretrain/mff_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'),
]


def _model(path):
    if path.startswith('mmpretrain::'):
        import mmpretrain
        path = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs',
                        path.split('::', 1)[1])
    else:
        path = osp.join(ROOT, path)
    cfg = Config.fromfile(path)
    return MODELS.build(cfg.model)


@pytest.mark.parametrize('upstream,ours', PAIRS, ids=['mae', 'mff'])
def test_upstream_checkpoint_loads_and_gives_the_same_loss(upstream, ours):
    torch.manual_seed(0)
    theirs = _model(upstream)
    # Non-trivial weights everywhere (the fixed position embeddings start at zero).
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model = _model(ours)
    assert type(model).__name__ == 'DeepMIM'
    result = model.load_state_dict(theirs.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(model.state_dict()) == set(theirs.state_dict())

    theirs.eval()
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.manual_seed(42)
        expected = theirs.loss(x, None)
        torch.manual_seed(42)
        got = model.loss(x, None)
    assert list(k for k in got if k.startswith('loss')) == ['loss_block12']
    torch.testing.assert_close(got['loss_block12'], expected['loss'], rtol=1e-6, atol=1e-6)
    if 'mff' in ours:
        # MFF logs its fusion weights: the same values under 1-indexed block names.
        for i, b in enumerate([0, 2, 4, 6, 8, 11]):
            torch.testing.assert_close(got[f'fusion_weight_block{b + 1}'],
                                       expected[f'weight_{i}'])
