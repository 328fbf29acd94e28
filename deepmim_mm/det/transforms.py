"""Test-time padding to ViTDet's fixed square canvas that keeps the image's own shape."""
from mmdet.datasets.transforms import Pad
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PadKeepImgShape(Pad):
    """mmdet's :class:`~mmdet.datasets.transforms.Pad`, leaving ``img_shape`` at the unpadded size.

    ViTDet tests on a padded square canvas. ``Pad`` also sets ``img_shape`` to the padded size,
    so the RPN and the box head clip boxes to the canvas instead of the image: boxes in the
    padding survive, count in the COCO metric and, on the CPU, break mmdet's mask pasting
    (mmdetection's ``projects/ViTDet`` pipeline has the same defect). This subclass pads
    identically and restores ``img_shape``.
    """

    def transform(self, results: dict) -> dict:
        img_shape = results['img_shape']
        results = super().transform(results)
        results['img_shape'] = img_shape
        return results
