"""Detection: a pretraining checkpoint of this plugin -> Mask R-CNN with PlainViT + SimpleFPN
(ViTDet style) in mmdet, trained and tested with tools/train.py and tools/test.py on a tiny
COCO-format dataset, through mmcv's compiled RoIAlign and NMS on the CPU."""
import glob
import os.path as osp
import re

import pytest
import torch

from conftest import ROOT, run_main
from downstream_utils import (PRETRAIN_IMG, TINY_VIT, make_pretrain_checkpoint, run_in_process,
                              write_coco)

DET_CONFIG = osp.join(ROOT, 'configs', 'detection',
                      'vitdet_mask-rcnn_vit-b-deepmim_16xb4-lsj-100e_coco.py')
IMG = 128
TINY_ARCH = dict(TINY_VIT, global_attn_indexes=[1, 3])


@pytest.fixture
def mmdet_scope():
    from mmengine.registry import DefaultScope

    import deepmim_mm.det  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def _tiny_vit(checkpoint=None, **kwargs):
    from mmdet.registry import MODELS
    init_cfg = None if checkpoint is None else dict(type='Pretrained', checkpoint=checkpoint,
                                                    prefix='backbone.')
    return MODELS.build(dict(type='PlainViT', arch=TINY_ARCH, img_size=IMG,
                             pretrain_img_size=PRETRAIN_IMG, window_size=4,
                             drop_path_rate=0.1, init_cfg=init_cfg, **kwargs))


def test_plain_vit_loads_every_encoder_key(tmp_path, mmdet_scope):
    ckpt = str(tmp_path / 'pretrain.pth')
    state = make_pretrain_checkpoint(ckpt)
    vit = _tiny_vit(ckpt)
    vit.init_weights()
    report = vit.pretrain_report
    encoder = {k[len('backbone.'):] for k in state if k.startswith('backbone.')}
    pretrain_only = {k for k in encoder if k.startswith(('proj_layers.', 'ln1.'))
                     or k in ('proj_weights', 'cls_token')}
    assert set(report.loaded) == encoder - pretrain_only
    assert set(report.dropped) == set(state) - {'backbone.' + k for k in report.loaded}
    assert 'backbone.cls_token' in report.dropped
    # New: the decomposed relative positions of every block (window and global), nothing else.
    assert {re.sub(r'layers\.\d+\.', '', k) for k in report.new} == {
        'attn.rel_pos_h', 'attn.rel_pos_w'}
    # ViTDet's position embedding: the pretraining one (class slot included) as it is,
    # interpolated to the input's grid at every forward.
    grid, new = PRETRAIN_IMG // 16, IMG // 16
    assert not report.resized
    torch.testing.assert_close(vit.pos_embed.detach(), state['backbone.pos_embed'])
    from mmpretrain.models.utils import resize_pos_embed
    expected = resize_pos_embed(state['backbone.pos_embed'], (grid, grid), (new, new),
                                'bicubic', 1)[:, 1:]
    seen = {}
    vit.drop_after_pos.register_forward_hook(lambda m, i, o: seen.setdefault('x', i[0]))
    images = torch.randn(1, 3, IMG, IMG)
    vit(images)
    patches = vit.patch_embed(images)[0].view(1, new, new, 64)
    torch.testing.assert_close(seen['x'], patches + expected.view(1, new, new, 64))
    torch.testing.assert_close(vit.layers[2].attn.qkv.weight.detach(),
                               state['backbone.layers.2.attn.qkv.weight'])


def test_plain_vit_resizes_a_pos_embed_of_another_grid(tmp_path, mmdet_scope):
    from mmdet.registry import MODELS
    from mmpretrain.models.utils import resize_pos_embed
    ckpt = str(tmp_path / 'pretrain.pth')
    state = make_pretrain_checkpoint(ckpt)
    vit = MODELS.build(dict(type='PlainViT', arch=TINY_ARCH, img_size=IMG, window_size=4,
                            pretrain_img_size=2 * PRETRAIN_IMG, init_cfg=dict(
                                type='Pretrained', checkpoint=ckpt, prefix='backbone.')))
    vit.init_weights()
    grid = PRETRAIN_IMG // 16
    assert vit.pretrain_report.resized == {
        'pos_embed': ((1, 1 + grid**2, 64), (1, 1 + 4 * grid**2, 64))}
    torch.testing.assert_close(vit.pos_embed.detach(), resize_pos_embed(
        state['backbone.pos_embed'], (grid, grid), (2 * grid, 2 * grid), 'bicubic', 1))


def test_plain_vit_window_and_global_attention(mmdet_scope):
    from mmpretrain.models.backbones.vit_sam import Attention
    vit = _tiny_vit()
    assert [layer.window_size for layer in vit.layers] == [4, 0, 4, 0]
    attn = vit.layers[1].attn  # a global block: relative positions over the whole 8x8 grid
    assert attn.rel_pos_h.shape == (2 * (IMG // 16) - 1, 32)
    torch.nn.init.normal_(attn.rel_pos_h)
    torch.nn.init.normal_(attn.rel_pos_w)
    x = torch.randn(2, 8, 8, 64)
    # SDPA with the relative-position mask equals mmpretrain's explicit softmax attention.
    torch.testing.assert_close(attn(x), Attention.forward(attn, x), atol=1e-5, rtol=1e-4)
    out = vit(torch.randn(2, 3, IMG, IMG))
    assert len(out) == 1 and out[0].shape == (2, 64, IMG // 16, IMG // 16)


def test_simple_fpn_and_layer_decay(mmdet_scope):
    from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
    fpn = MODELS.build(dict(type='SimpleFPN', backbone_channel=64, in_channels=[16, 32, 64, 64],
                            out_channels=32, num_outs=5, norm_cfg=dict(type='LN2d', eps=1e-6)))
    outs = fpn((torch.randn(2, 64, 8, 8),))
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 2]
    with pytest.raises(ValueError, match='in_channels'):
        MODELS.build(dict(type='SimpleFPN', backbone_channel=64, in_channels=[64] * 4,
                          out_channels=32))
    with pytest.raises(ValueError, match='num_outs must be 4 or 5, got 3'):
        MODELS.build(dict(type='SimpleFPN', backbone_channel=64, in_channels=[16, 32, 64, 64],
                          out_channels=32, num_outs=3))

    model = torch.nn.Module()
    model.backbone = _tiny_vit()
    model.neck = fpn
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='ViTLayerDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(
            type='AdamW', lr=1e-4, weight_decay=0.1)),
        paramwise_cfg=dict(layer_decay_rate=0.7, norm_decay_mult=0.,
                           custom_keys={'backbone.pos_embed': dict(decay_mult=0.)})))
    groups = {g['param_name']: g for g in constructor(model).optimizer.param_groups}
    n = TINY_VIT['num_layers']
    # ViTDet: block i gets rate ** (num_layers - i); embeddings rate ** (num_layers + 1).
    for i in range(n):
        assert groups[f'backbone.layers.{i}.attn.qkv.weight']['lr'] == pytest.approx(
            1e-4 * 0.7 ** (n - i))
    assert groups['backbone.patch_embed.projection.weight']['lr'] == pytest.approx(
        1e-4 * 0.7 ** (n + 1))
    assert groups['neck.fpn_convs.0.conv.weight']['lr'] == pytest.approx(1e-4)
    assert groups['backbone.pos_embed']['weight_decay'] == 0
    assert groups['backbone.layers.0.ln1.weight']['weight_decay'] == 0
    assert groups['backbone.layers.0.attn.qkv.weight']['weight_decay'] == pytest.approx(0.1)


def test_pad_keeps_img_shape(mmdet_scope):
    import numpy as np
    from mmdet.registry import TRANSFORMS
    pad = TRANSFORMS.build(dict(type='PadKeepImgShape', size=(128, 128),
                                pad_val=dict(img=(114, 114, 114))))
    out = pad(dict(img=np.zeros((96, 120, 3), np.uint8), img_shape=(96, 120)))
    assert out['img'].shape == (128, 128, 3) and out['pad_shape'][:2] == (128, 128)
    assert out['img_shape'] == (96, 120)
    assert (out['img'][100, 0] == 114).all()


def test_mask_rcnn_train_then_test_on_coco_format(tmp_path):
    # The compiled mmcv ops the RoI heads and the RPN go through, on the CPU.
    from mmcv.ops import RoIAlign, nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    rois = torch.tensor([[0., 0., 0., 8., 8.]])
    assert RoIAlign((7, 7), 1.0, 0)(torch.randn(1, 4, 16, 16), rois).shape == (1, 4, 7, 7)

    data_root = write_coco(str(tmp_path / 'coco')) + '/'
    ckpt = str(tmp_path / 'pretrain.pth')
    make_pretrain_checkpoint(ckpt)
    work_dir = str(tmp_path / 'work')
    cfg = tmp_path / 'tiny_mask_rcnn_coco.py'
    cfg.write_text(f'''
_base_ = {DET_CONFIG!r}
image_size = ({IMG}, {IMG})
norm_cfg = dict(type='LN2d', eps=1e-6, requires_grad=True)
model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(_delete_=True, type='PlainViT', arch={TINY_ARCH!r}, img_size={IMG},
                  pretrain_img_size={PRETRAIN_IMG},
                  patch_size=16, window_size=4, use_rel_pos=True, drop_path_rate=0.1,
                  init_cfg=dict(type='Pretrained', checkpoint={ckpt!r}, prefix='backbone.')),
    neck=dict(backbone_channel=64, in_channels=[16, 32, 64, 64], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, conv_out_channels=32, fc_out_channels=64),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(in_channels=32, conv_out_channels=32)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=200, max_per_img=50),
        rcnn=dict(sampler=dict(num=32))),
    # Three iterations leave scores near 1/81: keep every box so the metric has predictions.
    test_cfg=dict(rpn=dict(nms_pre=100, max_per_img=30), rcnn=dict(score_thr=0.0, max_per_img=20)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.8, 1.2), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='PadKeepImgShape', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={data_root!r}, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={data_root!r}, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={data_root + 'annotations/instances_val2017.json'!r})
test_evaluator = val_evaluator
max_iters = 2
# No validation while training (--no-validate; tools/test.py evaluates the checkpoint).
train_cfg = dict(max_iters=2, val_interval=2, dynamic_intervals=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1),
    dict(type='MultiStepLR', begin=0, end=2, by_epoch=False, milestones=[1], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
# Fixed seed: the same tiny run every time.
randomness = dict(seed=0)
log_processor = dict(window_size=1)
''')
    log = run_in_process('train.py', cfg, '--work-dir', work_dir, '--no-validate')
    assert 'Loaded pretrained encoder from' in log
    # ViTDet's position embedding: loaded at the pretraining grid, interpolated per forward.
    assert 'resized pos_embed' not in log and 'pos_embed' in log
    assert 'backbone.cls_token' in log and 'target_generator.teacher.proj' in log
    assert re.search(r'Iter\(train\) \[2/2\].*loss_rpn_cls.*loss_mask', log), log[-3000:]
    ckpt_out = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(ckpt_out)

    # --show-dir as mmdet's tools/test.py does it: DetVisualizationHook(draw=True,
    # test_out_dir), a relative directory under <work_dir>/<timestamp>/. (A visualizer of its
    # own name, as in a fresh process: mmengine keeps one instance per name.)
    test_work = tmp_path / 'test_vis'
    out = run_in_process('test.py', cfg, ckpt_out, '--work-dir', test_work, '--show-dir', 'vis',
                         '--cfg-options', 'visualizer.name=det_test')
    assert re.search(r'coco/bbox_mAP: -?\d+\.\d+', out), out[-3000:]
    assert re.search(r'coco/segm_mAP: -?\d+\.\d+', out), out[-3000:]
    assert 'Evaluating bbox' in out and 'Evaluating segm' in out
    assert 'results of the whole dataset is empty' not in out
    drawn = glob.glob(str(test_work / '*' / 'vis' / '*.jpg'))
    assert len(drawn) == 2, glob.glob(str(test_work / '**'), recursive=True)

    # --tta: mmdet's DetTTAModel (flip, NMS) merges boxes and refuses masks: a clear error for
    # Mask R-CNN before anything is built, and a TTA run of the same detector without its mask
    # head.
    with pytest.raises(ValueError, match='roi_head.mask_head'):
        run_main('tools/test.py', cfg, ckpt_out, '--tta')
    out = run_in_process('test.py', cfg, ckpt_out, '--work-dir', tmp_path / 'tta', '--tta',
                         '--cfg-options', 'model.roi_head.mask_head=None',
                         'model.roi_head.mask_roi_extractor=None', 'test_evaluator.metric=bbox')
    assert re.search(r'coco/bbox_mAP: -?\d+\.\d+', out), out[-3000:]
    dumped = (tmp_path / 'tta' / cfg.name).read_text()
    assert "type='DetTTAModel'" in dumped and "type='TestTimeAug'" in dumped
