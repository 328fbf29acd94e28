"""Image loading that names the file it cannot decode, or skips it with a warning."""
from typing import Optional

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log
from mmpretrain.registry import TRANSFORMS

_ACCEPTED = ('error', 'skip')


@TRANSFORMS.register_module()
class LoadImageFromFileChecked(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` with an explicit policy for unreadable images.

    Adds over the upstream transform: a file that exists but cannot be decoded (truncated or
    corrupt JPEG, not an image) is

    - ``on_corrupt='error'`` (default): a ``ValueError`` naming the file, raised where it is
      read (upstream: an ``assert``, which ``python -O`` removes, then a crash further down the
      pipeline);
    - ``on_corrupt='skip'``: a warning naming the file, and ``None`` returned, so mmengine's
      ``BaseDataset`` draws another sample (``max_refetch`` times at most) and training goes on.

    A missing file stays a ``FileNotFoundError`` in both modes: a wrong ``data_root`` is a
    configuration error, not a bad sample. Use it in place of ``LoadImageFromFile`` in a
    pipeline: ``dict(type='LoadImageFromFileChecked', on_corrupt='skip')``.
    """

    def __init__(self, on_corrupt: str = 'error', **kwargs) -> None:
        if on_corrupt not in _ACCEPTED:
            raise ValueError(f'LoadImageFromFileChecked: on_corrupt={on_corrupt!r}; accepted: '
                             f'{list(_ACCEPTED)}')
        if kwargs.get('ignore_empty'):
            raise ValueError('LoadImageFromFileChecked: use on_corrupt="skip" instead of '
                             'ignore_empty=True (which also hides missing files)')
        super().__init__(**kwargs)
        self.on_corrupt = on_corrupt

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            out = super().transform(results)
        except FileNotFoundError:
            raise
        except (AssertionError, OSError, ValueError, TypeError) as e:
            reason = str(e) or type(e).__name__
            if isinstance(e, AssertionError) or 'failed to load image' in reason:
                reason = 'the decoder returned no image'
            msg = (f'cannot decode image {filename} ({reason}): the file is corrupt or not an '
                   'image')
            if self.on_corrupt == 'skip':
                print_log(f'{msg}; skipped (on_corrupt="skip")', logger='current', level=30)
                return None
            raise ValueError(f'{msg}. Replace or remove it, or set on_corrupt="skip" in '
                             'LoadImageFromFileChecked to skip such files with a warning') from e
        return out

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", on_corrupt='{self.on_corrupt}')"
