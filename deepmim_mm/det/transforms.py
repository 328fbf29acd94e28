"""Test-time padding to ViTDet's fixed square canvas that keeps the image's own shape."""
from mmdet.datasets.transforms import Pad
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PadKeepImgShape(Pad):
    """mmdet's :class:`~mmdet.datasets.transforms.Pad`, leaving ``img_shape`` at the unpadded size.

    ViTDet tests on a 1024x1024 canvas (the image resized to 1024 on its long side, padded), as it
    trains. mmcv's ``Pad`` also sets ``img_shape`` to the padded size, so the RPN and the box head
    clip boxes to the canvas instead of the image: boxes predicted in the padding survive, are
    rescaled to lie outside the original image (scored by the COCO metric), and on the CPU mmdet's
    mask pasting (``_do_paste_mask`` with ``skip_empty=True``) fails on them with "upper bound and
    lower bound inconsistent with step sign". mmdetection's ``projects/ViTDet`` test pipeline has
    the same defect. This subclass pads identically and restores ``img_shape``, which is what
    mmdet's other configs (padding in the data preprocessor) give the heads.
    """

    def transform(self, results: dict) -> dict:
        img_shape = results['img_shape']
        results = super().transform(results)
        results['img_shape'] = img_shape
        return results
