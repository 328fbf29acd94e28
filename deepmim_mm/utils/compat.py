"""Compatibility fixes for mmengine 0.10.7, mmcv 2.1.0 and mmpretrain 1.2.0 on torch 2.14/numpy 2.

:func:`apply` is called once when ``deepmim_mm`` is imported. Each fix is idempotent, narrow (it
touches one upstream function or one upstream module's view of a library, never the global
``torch`` or ``numpy`` modules) and cheap: fixes for modules that are not imported yet are applied
by a post-import hook the moment that module finishes importing, so :func:`apply` imports none of
``mmcv``, ``mmcv.ops``, ``mmengine.runner`` or ``mmpretrain`` by itself (and never ``mmseg`` or
``mmdet``); an mmcv without compiled ops only means fix 4 never fires.

Fixes
-----
1. **Checkpoints under ``torch.load(weights_only=True)``** (torch >= 2.6 default; mmengine issue
   #1655, fixed only on mmengine's unreleased main branch). mmengine 0.10.7 loads and resumes
   checkpoints with a plain ``torch.load``, and the checkpoints it writes hold non-tensor objects,
   so ``load_checkpoint``, ``Runner(load_from=...)`` and ``--resume`` fail on all of them.
   Measured on real Runner checkpoints (a toy model and mmpretrain's MAE, with
   ``torch.serialization.get_unsafe_globals_in_checkpoint``), the globals to allow are exactly:

   - ``mmengine.logging.history_buffer.HistoryBuffer`` (the message hub's log buffers);
   - ``builtins.getattr``: ``HistoryBuffer.__getstate__`` stores its statistics methods, which
     pickle as ``getattr(HistoryBuffer, 'min')`` etc. The real ``getattr`` would let a pickle walk
     to any attribute, so a *restricted* ``getattr`` (:func:`_restricted_getattr`) is registered
     under that name instead: it returns only ``HistoryBuffer``'s statistics methods (``min``,
     ``max``, ``current``, ``mean`` and methods registered on the class) and refuses the rest;
   - ``numpy.ndarray``, ``numpy.dtype``, ``numpy._core.multiarray._reconstruct`` and
     ``numpy._core.multiarray.scalar`` (also under their numpy 1 names ``numpy.core.multiarray.*``
     for checkpoints written with numpy 1), and the classes of the dtypes restored
     (``numpy.dtypes.Float64DType`` and ``Int64DType``: the unpickler checks an instance's type
     before restoring its state). The classes of all boolean and numeric dtypes are allowed, so
     a value logged as float32 or int32 loads too; object, string and void dtypes are not.

   They are registered once with ``torch.serialization.add_safe_globals``, so they hold for every
   ``torch.load`` in the process (a user's own ``torch.load('epoch_1.pth')`` works too), while any
   other global is still refused. In ``mmengine.runner.checkpoint`` (``load_from_local``, behind
   ``load_checkpoint`` and the Runner's ``load_from`` and ``resume``; also ``load_from_pavi``,
   ``load_from_ceph`` and the local branches of ``load_from_openmmlab``/``load_from_mmcls``)
   ``torch.load`` is routed through :func:`_mmengine_torch_load`: when a checkpoint holds a
   global outside the list, the error names that global and the file and gives the two ways to
   allow it: ``torch.serialization.add_safe_globals([...])`` for that one global, or the
   environment variable ``DEEPMIM_TRUST_CHECKPOINTS=1``, which makes these loaders use
   ``weights_only=False`` (full pickle: only for files you trust, it can run arbitrary code).
   ``http(s)://`` and ``torchvision://`` checkpoints go through torch's
   ``load_state_dict_from_url``, which loads with ``weights_only=False`` already; mmengine's own
   ``hub.load_url`` with a plain ``torch.load`` only exists on torch < 1.7.

2. **mmcv ``adjust_hue``** (``mmcv/image/photometric.py``; reached through mmpretrain's
   ``ColorJitter(hue=...)``). It shifts the hue channel by ``np.uint8(hue_factor * 255)``, which
   under numpy 2 raises ``OverflowError: Python integer -76 out of bounds for uint8`` for every
   negative ``hue_factor`` (numpy 1 wrapped -76 to 180). It is replaced in
   ``mmcv.image.photometric``, ``mmcv.image`` and ``mmcv`` by :func:`_adjust_hue`, the same code
   with the shift computed as ``int(hue_factor * 255) % 256``: numpy 1's wrap-around, i.e. the
   cyclic hue shift that torchvision's original intends.

3. **mmpretrain ``np.in1d``** (removed in numpy 2.4) in ``mmpretrain/evaluation/metrics/
   retrieval.py`` (``RetrievalRecall.calculate`` and ``RetrievalAveragePrecision`` through
   ``_calculateAp_for_sample``): that module's ``np`` becomes numpy plus ``in1d``
   (``isin(...).ravel()``, numpy's own definition).

4. **mmcv ``np.float``** (removed in numpy 1.24) in ``mmcv/ops/pixel_group.py``: that module's
   ``np`` becomes numpy plus ``float = float``. The line only runs on the parrots branch
   (``torch.__version__ == 'parrots'``); on PyTorch, ``pixel_group`` returns the compiled op's
   result directly, so this fix is a guard rather than a live repair.

A grep of mmcv 2.1.0 and mmpretrain 1.2.0 (their ``.mim`` tool scripts included) for the other
names numpy 2 removed (``np.int``, ``np.bool``, ``np.long``, ``np.object``, ``np.complex``,
``np.product``, ``np.cumproduct``, ``np.alltrue``, ``np.sometrue``, ``np.round_``,
``np.row_stack``, ``np.trapz``, ``np.NaN``, ``np.Inf``, ``np.asfarray``, ``np.find_common_type``,
``np.float_``, ``np.complex_``, ``np.string_``, ``np.unicode_``, ``np.cast``, ``np.core``,
``ndarray.tostring``/``ptp``/``newbyteorder``) finds no other use, and ``adjust_hue`` holds the
only ``np.uint8(...)`` conversion of a possibly negative value. A smoke run under numpy 2.4 of
mmpretrain's image transforms (ColorJitter, the RandAugment/AutoAugment operations with positive
and negative magnitudes, crops, erasing, blur, lighting), mmcv's image functions and common
transforms, and mmpretrain's classification and retrieval metrics failed only in fixes 2 and 3.
mmseg's and mmdet's numpy 2 breakages belong to ``deepmim_mm.seg``/``deepmim_mm.det``.

5. **``pkg::`` base configs and ``collate_fn``**: see section 3 below (every dataloader of a
   config inheriting ``mmpretrain::`` configs failed at its first batch).

6. **``import mmpretrain.models`` imports mmdet** (``mmpretrain/models/utils/
   res_layer_extra_norm.py``, guarded by ``try/except ImportError``), about 2.5 s and the whole
   detection stack for a pretraining user. :func:`import_mmpretrain_models` imports mmpretrain's
   models with mmdet hidden, so the guard takes its ``except`` branch; the only thing skipped is
   mmpretrain's ``ResLayerExtraNorm`` for mmdet, which this plugin does not use.

7. **``compile = True`` with ``paramwise_cfg``**: mmengine's ``DefaultOptimWrapperConstructor``
   (and its subclasses: mmpretrain's layer decay, this plugin's ViTDet one) builds the optimizer
   from a ``ConfigDict``, so every param group is a ``ConfigDict``; dynamo (torch 2.14) cannot
   trace the optimizer step over them ("UserDefinedDictVariable has no attribute items") and the
   Runner's ``torch.compile`` of ``train_step`` fails. :func:`_patch_plain_param_groups` gives the
   constructor's result plain-dict param groups with the same values.
"""
import functools
import os
import pickle
import re
import sys
import types
import warnings

import numpy as np

#: Environment variable: ``1``/``true``/``yes`` makes mmengine's checkpoint loaders use
#: ``torch.load(weights_only=False)`` (trusts every checkpoint: full pickle can run code).
TRUST_ENV = 'DEEPMIM_TRUST_CHECKPOINTS'

_applied = False


def apply() -> None:
    """Apply every fix (idempotent). Called by ``import deepmim_mm``."""
    global _applied
    if _applied:
        return
    _applied = True
    _register_numpy_safe_globals()
    when_imported('mmengine.logging.history_buffer', _register_history_buffer_safe_globals)
    when_imported('mmengine.runner.checkpoint', _route_mmengine_torch_load)
    when_imported('mmcv', _patch_mmcv_adjust_hue)
    when_imported('mmcv.ops.pixel_group', _patch_mmcv_pixel_group)
    when_imported('mmpretrain.evaluation.metrics.retrieval', _patch_mmpretrain_retrieval)
    when_imported('mmengine.runner', _patch_runner_collate_scope)
    when_imported('mmengine.optim.optimizer.default_constructor', _patch_plain_param_groups)


# ---------------------------------------------------------------------------------------------
# Post-import hooks: patch a module as soon as it is imported, without importing it ourselves.
# ---------------------------------------------------------------------------------------------
class _PostImportFinder:
    """A ``sys.meta_path`` finder that runs callbacks right after a named module is executed.

    It finds the module's spec with the finders after it and wraps that spec's loader's
    ``exec_module`` on the instance (the loader keeps its type, so ``pkg_resources``/``inspect``
    see the usual loader); the wrapper is removed again once the module has executed.
    """

    def __init__(self):
        self.hooks = {}

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.hooks:
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        loader = getattr(spec, 'loader', None)
        if (loader is None or isinstance(loader, type) or not hasattr(loader, '__dict__')
                or not hasattr(loader, 'exec_module')):
            return spec  # not a per-module loader instance: leave it alone
        original = loader.exec_module

        def exec_module(module):
            try:
                original(module)
            finally:
                loader.__dict__.pop('exec_module', None)
            for hook in self.hooks.pop(fullname, []):
                _run_hook(hook, module)

        loader.exec_module = exec_module
        return spec


_finder = _PostImportFinder()


def _run_hook(hook, module):
    # A fix that no longer fits (another upstream version) must not break importing upstream.
    try:
        hook(module)
    except Exception as error:  # noqa: BLE001
        warnings.warn(f'deepmim_mm.utils.compat: {hook.__name__} failed on {module.__name__} '
                      f'({type(error).__name__}: {error}); that fix is not applied.')


def when_imported(name, hook):
    """Call ``hook(module)`` once module ``name`` is imported: now if it already is, else later."""
    module = sys.modules.get(name)
    if module is not None:
        _run_hook(hook, module)
        return
    _finder.hooks.setdefault(name, []).append(hook)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


# ---------------------------------------------------------------------------------------------
# 1. mmengine checkpoints under torch.load(weights_only=True)
# ---------------------------------------------------------------------------------------------
def _numpy_dtype_classes():
    """Classes of numpy's boolean and numeric dtypes (``numpy.dtypes.Float64DType``, ...)."""
    return sorted({type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDG'}, key=repr)


def _register_numpy_safe_globals():
    import torch
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    torch.serialization.add_safe_globals([
        np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
        # Checkpoints written with numpy 1 name them under numpy.core.
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'),
        *_numpy_dtype_classes()
    ])


def _restricted_getattr(obj, name):
    """``getattr`` for the weights-only unpickler: only ``HistoryBuffer``'s statistics methods.

    ``HistoryBuffer.__getstate__`` pickles its statistics methods as ``getattr(HistoryBuffer,
    'min')``; anything else a pickle asks ``getattr`` for is refused.
    """
    from mmengine.logging import HistoryBuffer
    allowed = {'min', 'max', 'current', 'mean'} | {
        key for key, value in HistoryBuffer._statistics_methods.items()
        if HistoryBuffer.__dict__.get(key) is value
    }
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'Unsupported global: GLOBAL builtins.getattr with arguments ({obj!r}, {name!r}): '
        'deepmim_mm allows getattr in weights-only loads only for the statistics methods of '
        f'mmengine.logging.HistoryBuffer ({sorted(allowed)}).')


def _register_history_buffer_safe_globals(module):
    import torch
    torch.serialization.add_safe_globals([
        module.HistoryBuffer,
        (_restricted_getattr, 'builtins.getattr'),
    ])


def _trust_checkpoints():
    return os.environ.get(TRUST_ENV, '').strip().lower() in ('1', 'true', 'yes', 'on')


_GLOBAL_PATTERNS = (
    re.compile(r'GLOBAL (\S+) was not an allowed global'),
    re.compile(r'GLOBAL (builtins\.getattr with arguments \([^)]*\))'),
    re.compile(r'(unrecognized function .*?)(?:\n|$)'),
    re.compile(r'(Can only create new object .*?)(?:\n|$)'),
)


def _refusal_message(source, error):
    text = str(error)
    culprit = None
    for pattern in _GLOBAL_PATTERNS:
        match = pattern.search(text)
        if match:
            culprit = match.group(1)
            break
    detail = text.split('WeightsUnpickler error:', 1)[-1].strip().split('\n')[0]
    name = culprit.split(' ')[0] if culprit else '<the global named above>'
    return (
        f'mmengine could not load checkpoint {source!r} with torch.load(weights_only=True): it '
        f'holds {f"the global `{culprit}`" if culprit else "an object"}, which is not allowed. '
        'deepmim_mm allows what mmengine checkpoints hold (HistoryBuffer, numpy arrays, '
        'scalars and dtypes) on top of torch\'s defaults. '
        f'If you trust this file, either allow that global with '
        f'`torch.serialization.add_safe_globals([{name}])` before loading, or set the '
        f'environment variable {TRUST_ENV}=1 to make mmengine\'s checkpoint loaders use '
        f'weights_only=False (full pickle, which can run arbitrary code).\n'
        f'torch said: {detail}')


def _mmengine_torch_load(f, *args, **kwargs):
    """``torch.load`` as mmengine's checkpoint loaders see it.

    Honours ``DEEPMIM_TRUST_CHECKPOINTS`` when the caller did not choose ``weights_only``, and
    turns a weights-only refusal into an error naming the global, the file and the remedies.
    """
    import torch
    if 'weights_only' not in kwargs and _trust_checkpoints():
        kwargs['weights_only'] = False
    try:
        return torch.load(f, *args, **kwargs)
    except pickle.UnpicklingError as error:
        if kwargs.get('weights_only') is False:
            raise
        source = f if isinstance(f, (str, os.PathLike)) else getattr(f, 'name', repr(f))
        raise pickle.UnpicklingError(_refusal_message(str(source), error)) from error


class _TorchWithCheckedLoad(types.ModuleType):
    """``torch`` as one upstream module sees it: everything delegates to torch except ``load``."""

    def __init__(self):
        super().__init__('torch')
        self.load = _mmengine_torch_load

    def __getattr__(self, name):
        import torch
        return getattr(torch, name)


def _route_mmengine_torch_load(module):
    if not isinstance(module.torch, _TorchWithCheckedLoad):
        module.torch = _TorchWithCheckedLoad()


# ---------------------------------------------------------------------------------------------
# numpy 2 in mmcv / mmpretrain
# ---------------------------------------------------------------------------------------------
class _NumpyWithAliases(types.ModuleType):
    """``numpy`` as one upstream module sees it: numpy plus names numpy 2 removed."""

    def __init__(self, **aliases):
        super().__init__('numpy')
        self.__dict__.update(aliases)

    def __getattr__(self, name):
        return getattr(np, name)


def _in1d(ar1, ar2, assume_unique=False, invert=False, *, kind=None):
    """numpy < 2.4's ``np.in1d``: ``np.isin`` on the flattened first argument."""
    return np.isin(np.asarray(ar1).ravel(), ar2, assume_unique=assume_unique, invert=invert,
                   kind=kind)


def _patch_mmpretrain_retrieval(module):
    if not hasattr(module.np, 'in1d'):
        module.np = _NumpyWithAliases(in1d=_in1d)


def _patch_mmcv_pixel_group(module):
    if not hasattr(module.np, 'float'):
        module.np = _NumpyWithAliases(float=float)


def _adjust_hue(img, hue_factor, backend=None):
    """mmcv 2.1.0's ``mmcv.image.adjust_hue`` with the numpy 2 overflow fixed.

    Identical to upstream (same checks, backends and results as under numpy 1) except that the
    hue shift is ``np.uint8(int(hue_factor * 255) % 256)``: upstream's ``np.uint8(hue_factor *
    255)`` raises ``OverflowError`` under numpy 2 for every negative ``hue_factor``.
    It duplicates the upstream function because the defect sits in its middle.
    """
    import cv2
    from PIL import Image
    photometric = sys.modules['mmcv.image.photometric']
    if backend is None:
        backend = photometric.imread_backend
    if backend not in ['cv2', 'pillow']:
        raise ValueError(f'backend: {backend} is not supported.'
                         f"Supported backends are 'cv2', 'pillow'")
    if not (-0.5 <= hue_factor <= 0.5):
        raise ValueError(f'hue_factor:{hue_factor} is not in [-0.5, 0.5].')
    if not (isinstance(img, np.ndarray) and (img.ndim in {2, 3})):
        raise TypeError('img should be ndarray with dim=[2 or 3].')
    # numpy 1 wrapped negative shifts around (-76 -> 180): a cyclic shift of the hue channel.
    shift = np.uint8(int(hue_factor * 255) % 256)

    if backend == 'pillow':
        assert img.dtype == np.uint8, 'Pillow backend only support uint8 type'
        # Image.fromarray defaultly supports RGB, not BGR.
        pil_image = Image.fromarray(img[..., ::-1], mode='RGB')
        input_mode = pil_image.mode
        if input_mode in {'L', '1', 'I', 'F'}:
            return pil_image
        h, s, v = pil_image.convert('HSV').split()
        np_h = np.array(h, dtype=np.uint8)
        # uint8 addition takes care of rotation across boundaries
        with np.errstate(over='ignore'):
            np_h += shift
        h = Image.fromarray(np_h, 'L')
        pil_image = Image.merge('HSV', (h, s, v)).convert(input_mode)
        return np.array(pil_image, dtype=img.dtype)[..., ::-1]
    dtype = img.dtype
    img = img.astype(np.uint8)
    hsv_img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV_FULL)
    h, s, v = cv2.split(hsv_img)
    h = h.astype(np.uint8)
    # uint8 addition takes care of rotation across boundaries
    with np.errstate(over='ignore'):
        h += shift
    hsv_img = cv2.merge([h, s, v])
    return cv2.cvtColor(hsv_img, cv2.COLOR_HSV2BGR_FULL).astype(dtype)


def _patch_mmcv_adjust_hue(mmcv):
    photometric = sys.modules.get('mmcv.image.photometric')
    if photometric is None:  # mmcv without its image package: nothing to fix
        return
    original = photometric.adjust_hue
    if original is _adjust_hue:
        return
    for module in (photometric, sys.modules.get('mmcv.image'), mmcv):
        if module is not None and getattr(module, 'adjust_hue', None) is original:
            module.adjust_hue = _adjust_hue


# ---------------------------------------------------------------------------------------------
# 3. Configs that inherit ``pkg::`` configs: the ``_scope_`` tag on ``collate_fn``
# ---------------------------------------------------------------------------------------------
# mmengine 0.10.7 tags every dict with a ``type`` key in a ``pkg::`` base config with
# ``_scope_='<pkg>'``. The Runner builds ``collate_fn`` by ``partial(FUNCTIONS.get(type), **cfg)``
# without popping that key, so every dataloader of such a config fails at the first batch with
# ``default_collate() got an unexpected keyword argument '_scope_'``. The wrapper drops the tag
# from ``collate_fn`` before the Runner (or FlexibleRunner) builds the dataloader.


def _strip_collate_scope(build_dataloader):
    @functools.wraps(build_dataloader)
    def wrapper(dataloader, *args, **kwargs):
        if isinstance(dataloader, dict):
            collate = dataloader.get('collate_fn')
            if isinstance(collate, dict) and '_scope_' in collate:
                dataloader = dataloader.copy()
                dataloader['collate_fn'] = {
                    k: v for k, v in collate.items() if k != '_scope_'}
        return build_dataloader(dataloader, *args, **kwargs)

    wrapper._deepmim_patched = True
    return wrapper


def _patch_runner_collate_scope(module):
    """Patch ``Runner.build_dataloader`` and ``FlexibleRunner.build_dataloader`` (idempotent)."""
    for cls in (module.Runner, module.FlexibleRunner):
        fn = cls.__dict__['build_dataloader'].__func__
        if not getattr(fn, '_deepmim_patched', False):
            cls.build_dataloader = staticmethod(_strip_collate_scope(fn))


def _plain_param_groups(call):
    @functools.wraps(call)
    def wrapper(self, *args, **kwargs):
        optim_wrapper = call(self, *args, **kwargs)
        optimizer = getattr(optim_wrapper, 'optimizer', None)
        if optimizer is not None:
            optimizer.param_groups = [g if type(g) is dict else dict(g)
                                      for g in optimizer.param_groups]
        return optim_wrapper

    wrapper._deepmim_patched = True
    return wrapper


def _patch_plain_param_groups(module):
    """Patch ``DefaultOptimWrapperConstructor.__call__`` (fix 7 above; idempotent)."""
    cls = module.DefaultOptimWrapperConstructor
    if not getattr(cls.__call__, '_deepmim_patched', False):
        cls.__call__ = _plain_param_groups(cls.__call__)


# ---------------------------------------------------------------------------------------------
# 4. mmpretrain.models without mmdet
# ---------------------------------------------------------------------------------------------
def import_mmpretrain_models():
    """Import ``mmpretrain.models`` without letting it import mmdet (fix 6 above).

    Where mmdet or mmpretrain's models are already imported, this is a plain import.
    """
    import importlib
    if 'mmpretrain.models' in sys.modules or 'mmdet' in sys.modules:
        return importlib.import_module('mmpretrain.models')
    sys.modules['mmdet'] = None  # `import mmdet...` raises ImportError while this is set
    try:
        return importlib.import_module('mmpretrain.models')
    finally:
        if sys.modules.get('mmdet', 0) is None:
            del sys.modules['mmdet']
