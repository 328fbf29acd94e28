"""What the tools in ``tools/misc/`` share: reading a config as the Runner would."""
import os.path as osp

from mmengine.config import Config


def load_config(path, cfg_options=None, import_custom=False):
    """``Config.fromfile`` of a config file or of ``pkg::rel/path.py`` (resolved as mmengine
    resolves a ``_base_`` of that form: the package's ``.mim/configs``), with ``--cfg-options``
    merged; ``import_custom`` imports the config's ``custom_imports`` as the Runner does."""
    full = path
    if '::' in path:
        # mmengine's own resolution of 'pkg::path' (also what `_base_ = 'pkg::...'` uses).
        full, _ = Config._get_cfg_path(path, '')
    if not osp.isfile(full):
        raise SystemExit(f'error: config file not found: {path}')
    cfg = Config.fromfile(full)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if import_custom and cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    return cfg


def add_cfg_options(parser):
    from mmengine.config import DictAction
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs merged into it (as for '
        'tools/train.py): key="[a,b]" or key=a,b for lists, key="[(a,b),(c,d)]" for nested '
        'lists/tuples; quote the value, no white space')
