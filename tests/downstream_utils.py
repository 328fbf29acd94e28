"""Helpers for the downstream tests: tiny datasets in the real ADE20K / COCO formats and a tiny
pretraining checkpoint in this plugin's format (mmpretrain MFF/MAE keys under ``backbone.``,
decoder under ``neck.``, plus a teacher key that downstream loading must drop)."""
import glob
import json
import os
import os.path as osp

import numpy as np
import torch

#: The tiny ViT used by both tasks (pretraining and fine-tuning must agree).
TINY_VIT = dict(embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=256)
#: Pretraining resolution (3x3 patch grid at patch 16): downstream grids differ, so the
#: position embedding is resized on load.
PRETRAIN_IMG = 48


def run_in_process(script, *argv):
    """``python tools/<script> argv`` in this process (``conftest.run_main``): returns the log the
    Runner wrote under ``--work-dir``."""
    from conftest import run_main
    argv = [str(a) for a in argv]
    assert run_main(f'tools/{script}', *argv) == 0
    work_dir = argv[argv.index('--work-dir') + 1]
    with open(max(glob.glob(osp.join(work_dir, '*', '*.log')), key=osp.getmtime)) as f:
        return f.read()


def make_pretrain_checkpoint(path, seed=0):
    """Save mmpretrain's own MFF model (MFFViT + MAE decoder) the way mmengine saves it, plus a
    frozen-teacher key, and return the state dict.

    MFF's checkpoint is a superset of MAE's (``backbone.proj_layers``/``proj_weights``), so it
    checks that pretraining-only encoder keys are dropped too.
    """
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import deepmim_mm  # noqa: F401
    torch.manual_seed(seed)
    cfg = dict(
        type='MFF',
        backbone=dict(type='MFFViT', arch=dict(TINY_VIT), img_size=PRETRAIN_IMG, patch_size=16,
                      mask_ratio=0.75, out_indices=[0, 2, 3]),
        neck=dict(type='MAEPretrainDecoder', num_patches=(PRETRAIN_IMG // 16) ** 2,
                  patch_size=16, in_chans=3, embed_dim=64, decoder_embed_dim=32,
                  decoder_depth=1, decoder_num_heads=2, mlp_ratio=4.),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=16,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    model.init_weights()
    state = model.state_dict()
    state['target_generator.teacher.proj'] = torch.zeros(4, 4)  # a teacher: must be dropped
    torch.save({'state_dict': state, 'meta': {}}, path)
    return state


def _blob_image(rng, h, w, boxes_and_classes):
    """A noisy background with coloured rectangles; returns (uint8 HxWx3, label map HxW)."""
    img = rng.normal(110, 20, (h, w, 3))
    label = np.zeros((h, w), np.uint8)
    for (x0, y0, x1, y1), cls in boxes_and_classes:
        colour = np.array([(cls * 67) % 256, (cls * 151 + 40) % 256, (cls * 29 + 90) % 256])
        img[y0:y1, x0:x1] = colour + rng.normal(0, 10, (y1 - y0, x1 - x0, 3))
        label[y0:y1, x0:x1] = cls
    return np.clip(img, 0, 255).astype(np.uint8), label


def write_ade20k(root, num_train=4, num_val=2, size=(80, 96), seed=0):
    """ADEChallengeData2016 layout: ``images/{training,validation}/*.jpg`` (JPEG) and
    ``annotations/{training,validation}/*.png`` (8-bit label maps, 0 = other/ignored, 1..150 =
    the ADE20K classes, as mmseg's ``ADE20KDataset`` with ``reduce_zero_label=True`` reads them).
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    h, w = size
    for split, n in (('training', num_train), ('validation', num_val)):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for i in range(n):
            shapes = [((4, 4, w // 2, h // 2), 1 + (i % 3)),
                      ((w // 2, h // 3, w - 4, h - 6), 5 + (i % 2))]
            img, label = _blob_image(rng, h, w, shapes)
            label[label == 0] = 3  # background class "sky" (3), plus a few ignored pixels
            label[:2, :2] = 0
            name = f'ADE_{split[:5]}_{i:08d}'
            Image.fromarray(img).save(osp.join(root, 'images', split, name + '.jpg'), quality=92)
            Image.fromarray(label).save(osp.join(root, 'annotations', split, name + '.png'))
    return root


def write_coco(root, num_train=4, num_val=2, size=(96, 128), seed=0):
    """COCO layout: ``train2017/``, ``val2017/`` (JPEG) and ``annotations/instances_*2017.json``
    with polygon segmentations, boxes (x, y, w, h), areas and COCO's 80 categories."""
    from mmdet.datasets import CocoDataset
    from PIL import Image
    rng = np.random.default_rng(seed)
    h, w = size
    classes = CocoDataset.METAINFO['classes']
    cat_ids = list(range(1, 91))
    # COCO's real ids skip some numbers; the metric only needs the name<->id mapping.
    cat_ids = [i for i in cat_ids if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    categories = [dict(id=cid, name=name, supercategory='thing')
                  for cid, name in zip(cat_ids, classes)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann_id = 1
    for split, n in (('train2017', num_train), ('val2017', num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            boxes = [((8, 10, 56, 60), 0), ((64, 30, 120, 88), 2 + (i % 2))]
            img, _ = _blob_image(rng, h, w, [(b, c + 1) for b, c in boxes])
            image_id = 1000 * (split == 'val2017') + i + 1
            file_name = f'{image_id:012d}.jpg'
            Image.fromarray(img).save(osp.join(root, split, file_name), quality=92)
            images.append(dict(id=image_id, file_name=file_name, height=h, width=w))
            for (x0, y0, x1, y1), c in boxes:
                # A polygon (an octagon inside the box), as COCO stores instance masks.
                cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
                poly = []
                for a in np.linspace(0, 2 * np.pi, 8, endpoint=False):
                    poly += [float(cx + rx * np.cos(a)), float(cy + ry * np.sin(a))]
                xs, ys = poly[0::2], poly[1::2]
                bx, by = min(xs), min(ys)
                annotations.append(dict(
                    id=ann_id, image_id=image_id, category_id=cat_ids[c], iscrowd=0,
                    segmentation=[poly], bbox=[bx, by, max(xs) - bx, max(ys) - by],
                    area=float(0.5 * abs(sum(xs[k] * ys[k - 1] - xs[k - 1] * ys[k]
                                             for k in range(len(xs)))))))
                ann_id += 1
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return root
