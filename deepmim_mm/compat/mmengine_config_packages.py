"""Fix (applied on import): mmengine resolves a ``scope::path.py`` config base through a fixed
map of scope to distribution name (``mmengine.config.utils.MODULE2PACKAGE``, e.g. ``mmseg`` ->
``mmsegmentation``); where the module is installed under another distribution (the OneDL fork's
``onedl-mmsegmentation``), every such base fails with "mmsegmentation is not installed". For each
scope whose module imports but whose mapped distribution is absent, the map is pointed at the
module name, which mmengine finds through ``importlib.util.find_spec`` (as it already finds
``mmdet::`` and ``mmpretrain::`` on the fork).

Config bases are resolved before a config's ``custom_imports`` run, so this takes effect only
when applied before ``Config.fromfile``: the plugin's tools and :func:`deepmim_mm.utils.load_config`
do it through :func:`deepmim_mm.compat.apply_all`."""
import importlib.util
from importlib import metadata

__all__ = ['apply', 'unresolvable_scopes']

_remapped = set()


def unresolvable_scopes() -> dict:
    """``{scope: distribution}`` of the config scopes whose module is importable but whose
    distribution, as mmengine names it, is not installed."""
    from mmengine.config.utils import MODULE2PACKAGE
    found = {}
    for scope, dist in MODULE2PACKAGE.items():
        if dist == scope or importlib.util.find_spec(scope) is None:
            continue
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            found[scope] = dist
    return found


def apply() -> bool:
    """Point every unresolvable scope at its module (idempotent); returns whether any scope is
    so pointed."""
    from mmengine.config.utils import MODULE2PACKAGE
    for scope in unresolvable_scopes():
        MODULE2PACKAGE[scope] = scope
        _remapped.add(scope)
    return bool(_remapped)


apply()
