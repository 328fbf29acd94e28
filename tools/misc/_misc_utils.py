"""What the tools in ``tools/misc/`` share: reading a config as the Runner would."""
from deepmim_mm.engine.config_checks import ALLOW_NEW_FLAG
from deepmim_mm.engine.config_checks import load_config as _load_config


def load_config(path, cfg_options=None, allow_new_keys=False, import_custom=False):
    """:func:`deepmim_mm.engine.config_checks.load_config` (a file or ``pkg::rel/path.py``,
    ``--cfg-options`` checked and merged, ``custom_imports`` imported when ``import_custom``);
    a missing file or a bad override ends the tool with one ``error:`` line."""
    try:
        return _load_config(path, cfg_options, allow_new_keys, import_custom)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'error: {e}') from None


def add_cfg_options(parser):
    from mmengine.config import DictAction
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs merged into it (as for '
        'tools/train.py): key="[a,b]" or key=a,b for lists, key="[(a,b),(c,d)]" for nested '
        'lists/tuples; quote the value, no white space; a key the config does not have is an '
        f'error unless {ALLOW_NEW_FLAG}')
    parser.add_argument(ALLOW_NEW_FLAG, action='store_true',
                        help='let --cfg-options add keys the config does not have')
