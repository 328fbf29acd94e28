"""Fix (applied on import; before ``Config.fromfile``, as config bases are read before a config's
``custom_imports``): a ``scope::`` config base whose module is installed under another distribution
than ``mmengine.config.utils.MODULE2PACKAGE`` names (``onedl-mmsegmentation``) is found by its
module name."""
import importlib.util
from importlib import metadata

__all__ = ['apply', 'unresolvable_scopes']

_remapped = set()


def unresolvable_scopes() -> dict:
    """``{scope: distribution}``: the scopes whose module imports but distribution is missing."""
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
    """Point every unresolvable scope at its module (idempotent); returns whether any is."""
    from mmengine.config.utils import MODULE2PACKAGE
    for scope in unresolvable_scopes():
        MODULE2PACKAGE[scope] = scope
        _remapped.add(scope)
    return bool(_remapped)


apply()
