"""CosineFeatureLoss: DeepMIM-CLIP's per-token 2 - 2 cos over masked tokens."""
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

import deepmim_mm  # noqa: F401
import deepmim_mm.models.losses  # noqa: F401
from deepmim_mm.models.losses import CosineFeatureLoss


def test_hand_made_values():
    loss = MODELS.build(dict(type='CosineFeatureLoss'))
    assert isinstance(loss, CosineFeatureLoss)
    # One image, 4 tokens, 2-d features: cos = 1, 0, -1, 1/sqrt(2)
    # -> 2 - 2 cos = 0, 2, 4, 2 - sqrt(2)
    pred = torch.tensor([[[1., 0.], [0., 3.], [-2., 0.], [1., 1.]]])
    target = torch.tensor([[[5., 0.], [1., 0.], [1., 0.], [0., 7.]]])
    per_token = torch.tensor([0., 2., 4., 2 - 2**0.5])
    for m in ([1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]):
        mask = torch.tensor([m], dtype=torch.float32)
        expected = (per_token * mask[0]).sum() / mask.sum()
        torch.testing.assert_close(loss(pred, target, mask), expected)
    torch.testing.assert_close(loss(pred, target, None), per_token.mean())
    # Scale invariance per token (L2-normalised): rescaling either side leaves it unchanged.
    mask = torch.tensor([[1, 1, 0, 1]], dtype=torch.float32)
    torch.testing.assert_close(
        loss(pred * torch.tensor([[[3.], [0.5], [9.], [2.]]]), target * 4, mask),
        loss(pred, target, mask))


def test_matches_formula_on_random_tensors():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 10, 16, generator=g), torch.randn(3, 10, 16, generator=g)
    mask = (torch.rand(3, 10, generator=g) < 0.75).float()
    ref = ((2 - 2 * F.cosine_similarity(pred, target, dim=-1)) * mask).sum() / mask.sum()
    torch.testing.assert_close(CosineFeatureLoss()(pred, target, mask), ref)


def test_only_masked_tokens_count():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 8, 6, generator=g), torch.randn(2, 8, 6, generator=g)
    mask = torch.zeros(2, 8)
    mask[0, :3] = 1
    mask[1, 5:] = 1
    loss = CosineFeatureLoss()
    base = loss(pred, target, mask)

    changed = pred.clone()
    changed[mask == 0] = torch.randn(int((mask == 0).sum()), 6, generator=g) * 10
    torch.testing.assert_close(loss(changed, target, mask), base)
    changed_target = target.clone()
    changed_target[mask == 0] = -changed_target[mask == 0]
    torch.testing.assert_close(loss(pred, changed_target, mask), base)

    changed = pred.clone()
    changed[0, 0] = -changed[0, 0]
    assert not torch.allclose(loss(changed, target, mask), base)

    # Gradients reach the masked predictions only; the target gets none from the loss graph.
    p = pred.clone().requires_grad_(True)
    loss(p, target, mask).backward()
    assert torch.count_nonzero(p.grad[mask == 0]) == 0
    assert (p.grad[mask == 1].abs().sum(-1) > 0).all()


def test_fp32_under_low_precision_and_empty_mask():
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    mask = torch.ones(2, 5)
    ref = CosineFeatureLoss()(pred, target, mask)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = CosineFeatureLoss()(pred.bfloat16(), target.bfloat16(), mask)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)
    assert CosineFeatureLoss()(pred, target, torch.zeros(2, 5)).item() == 0.0


def test_in_deepmim_head_with_teacher_features():
    """The head scores every level against the same (B, N, D) teacher target with this loss."""
    head = MODELS.build(dict(type='DeepMIMHead', loss=dict(type='CosineFeatureLoss'),
                             level_weights=[1.0, 0.5]))
    g = torch.Generator().manual_seed(3)
    target = torch.randn(2, 16, 32, generator=g)
    preds = [torch.randn(2, 16, 32, generator=g) for _ in range(2)]
    mask = (torch.rand(2, 16, generator=g) < 0.75).float()
    losses = head.loss(preds, [target] * 2, mask, level_names=['block6', 'block12'])
    single = CosineFeatureLoss()
    torch.testing.assert_close(losses['loss_block6'], single(preds[0], target, mask))
    torch.testing.assert_close(losses['loss_block12'], 0.5 * single(preds[1], target, mask))
