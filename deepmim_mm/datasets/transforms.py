"""Image loaders that name (or skip) a file they cannot decode, and one that decodes nothing."""
from typing import Optional

from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmengine.logging import print_log
from mmpretrain.registry import TRANSFORMS
from PIL import UnidentifiedImageError

from .image_codec import read_header

_ACCEPTED = ('error', 'skip')


def corrupt_image(filename: str, error: BaseException, on_corrupt: str, where: str,
                  how_to_skip: Optional[str] = None) -> None:
    """Apply ``where``'s ``on_corrupt`` policy to a file whose decoding raised ``error``: a
    ``ValueError`` naming the file and ``how_to_skip`` (``'error'``), or a warning (``'skip'``)."""
    msg = (f'cannot decode image {filename} ({_reason(error)}): the file is corrupt or not an '
           'image')
    if on_corrupt == 'skip':
        print_log(f'{msg}; skipped (on_corrupt="skip")', logger='current', level=30)
        return
    how_to_skip = how_to_skip or f'set on_corrupt="skip" in {where}'
    raise ValueError(f'{msg}. Replace or remove it, or {how_to_skip} to skip such files with a '
                     'warning') from error


def check_on_corrupt(on_corrupt: str, where: str) -> str:
    if on_corrupt not in _ACCEPTED:
        raise ValueError(f'{where}: on_corrupt={on_corrupt!r}; accepted: {list(_ACCEPTED)}')
    return on_corrupt


def _reason(e: BaseException) -> str:
    reason = str(e).strip() or type(e).__name__
    if isinstance(e, AssertionError) or 'failed to load image' in reason:
        return 'the decoder returned no image'
    if '!buf.empty()' in reason:  # cv2.imdecode of zero bytes
        return 'the file is empty (0 bytes)'
    if isinstance(e, UnidentifiedImageError):
        return 'no image format Pillow reads starts this file'
    return reason.splitlines()[-1]


@TRANSFORMS.register_module()
class LoadImageFromFileChecked(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` with a policy for files that exist but cannot be decoded:
    ``on_corrupt='error'`` names the file, ``'skip'`` warns and returns ``None`` (mmengine's
    ``BaseDataset`` draws another sample); a missing file stays a ``FileNotFoundError``."""

    def __init__(self, on_corrupt: str = 'error', **kwargs) -> None:
        self.on_corrupt = check_on_corrupt(on_corrupt, type(self).__name__)
        if kwargs.get('ignore_empty'):
            raise ValueError(f'{type(self).__name__}: use on_corrupt="skip" instead of '
                             'ignore_empty=True (which also hides missing files)')
        super().__init__(**kwargs)

    def transform(self, results: dict) -> Optional[dict]:
        try:
            return self._load(results)
        except FileNotFoundError:
            raise
        except Exception as e:  # cv2.error, AssertionError, PIL's errors: the file's fault
            return self._corrupt(results['img_path'], e)

    def _load(self, results: dict) -> dict:
        return super().transform(results)

    def _corrupt(self, filename: str, e: BaseException) -> None:
        corrupt_image(filename, e, self.on_corrupt, type(self).__name__)


@TRANSFORMS.register_module()
class LoadImageBytes(LoadImageFromFileChecked):
    """``LoadImageFromFileChecked`` that decodes nothing: sets ``img_bytes`` and what the header
    says (``img_shape`` = ``ori_shape``, ``img_format``, ``img_mode``, ``img_orientation``)."""

    def _load(self, results: dict) -> dict:
        filename = results['img_path']  # read as the upstream transform reads it
        if self.file_client_args is not None:
            data = fileio.FileClient.infer_client(self.file_client_args, filename).get(filename)
        else:
            data = fileio.get(filename, backend_args=self.backend_args)
        results.update(read_header(data), img_bytes=data)
        results['ori_shape'] = results['img_shape']
        return results
