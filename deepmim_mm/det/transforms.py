"""Test-time padding to ViTDet's fixed square canvas that keeps the image's own shape."""
from mmdet.datasets.transforms import Pad
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PadKeepImgShape(Pad):
    """mmdet's :class:`~mmdet.datasets.transforms.Pad`, leaving ``img_shape`` at the unpadded
    size, so boxes are clipped to the image, not to ViTDet's padded test canvas."""

    def transform(self, results: dict) -> dict:
        img_shape = results['img_shape']
        results = super().transform(results)
        results['img_shape'] = img_shape
        return results
