"""What the tools in ``tools/misc/`` share: reading a config as the Runner would."""
from deepmim_mm.utils import add_cfg_options  # noqa: F401
from deepmim_mm.utils import load_config as _load_config


def load_config(path, cfg_options=None, allow_new_keys=False):
    """:func:`deepmim_mm.utils.load_config`; a missing file or bad override: one ``error:`` line."""
    try:
        return _load_config(path, cfg_options, allow_new_keys)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'error: {e}') from None
