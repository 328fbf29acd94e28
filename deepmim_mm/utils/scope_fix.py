"""Fix for configs that inherit mmpretrain's / mmseg's / mmdet's configs with ``pkg::`` bases.

mmengine 0.10.7 tags every dict with a ``type`` key in a ``pkg::`` base config with
``_scope_='<pkg>'``. The Runner builds ``collate_fn`` by ``partial(FUNCTIONS.get(type), **cfg)``
without popping that key, so every dataloader of such a config fails at the first batch with
``default_collate() got an unexpected keyword argument '_scope_'``. This drops the tag from
``collate_fn`` before the Runner (or FlexibleRunner) builds the dataloader.
"""
import functools


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


def apply() -> None:
    """Patch ``Runner.build_dataloader`` and ``FlexibleRunner.build_dataloader`` (idempotent)."""
    from mmengine.runner import FlexibleRunner, Runner
    for cls in (Runner, FlexibleRunner):
        fn = cls.__dict__['build_dataloader'].__func__
        if not getattr(fn, '_deepmim_patched', False):
            cls.build_dataloader = staticmethod(_strip_collate_scope(fn))
