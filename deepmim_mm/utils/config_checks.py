"""The entry points' config checks, each naming the field and what is accepted; load_config."""
import ast
import difflib
import functools
import importlib.util
import inspect
import os.path as osp
import textwrap
from typing import List, Optional

from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS
from mmengine.runner import (EpochBasedTrainLoop, FlexibleRunner, IterBasedTrainLoop, Runner,
                             TestLoop, ValLoop)
from mmengine.utils import import_modules_from_strings

#: Command-line flag of the entry points that lets ``--cfg-options`` add new keys.
ALLOW_NEW_FLAG = '--allow-new-keys'


def _closest(word: str, choices) -> Optional[str]:
    found = difflib.get_close_matches(word, [str(c) for c in choices], n=1)
    return found[0] if found else None


@functools.lru_cache(maxsize=None)
def runner_keys() -> frozenset:
    """The top-level config keys mmengine's runners read (their arguments and their code's
    ``cfg.get`` keys), and ``runner_type``, ``custom_imports``, ``tta_model``, ``tta_pipeline``
    that the entry points read."""
    keys = {'runner_type', 'custom_imports', 'tta_model', 'tta_pipeline'}
    for cls in (Runner, FlexibleRunner):
        keys |= set(inspect.signature(cls.__init__).parameters) - {'self', 'cfg'}
        for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(cls)))):
            func = getattr(node, 'func', None)
            owner = getattr(func, 'value', None)
            if (isinstance(func, ast.Attribute) and func.attr == 'get' and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and 'cfg' in (getattr(owner, 'id', None), getattr(owner, 'attr', None))):
                keys.add(node.args[0].value)
    return frozenset(keys)


def _untyped_arguments(path: List[str]) -> Optional[set]:
    """The new keys the Runner accepts in its untyped dict at ``path`` (``None``: not one)."""
    key = '.'.join(path)
    if not path:
        return runner_keys()
    if len(path) == 1 and key.endswith('_dataloader'):
        from torch.utils.data import DataLoader
        return set(inspect.signature(DataLoader).parameters) - {'self'}
    receivers = {'train_cfg': (EpochBasedTrainLoop, IterBasedTrainLoop), 'val_cfg': (ValLoop, ),
                 'test_cfg': (TestLoop, ), 'randomness': (Runner.set_randomness, )}
    if key in receivers:  # the arguments of the loops, or of the method, the dict is given to
        names = {name for f in receivers[key] for name in inspect.signature(f).parameters}
        return names - {'self', 'runner', 'dataloader', 'evaluator'} | {'type', 'by_epoch'}
    return {
        'env_cfg': {'cudnn_benchmark', 'mp_cfg', 'dist_cfg', 'resource_limit'},
        'env_cfg.mp_cfg': {'mp_start_method', 'opencv_num_threads'},
        'env_cfg.dist_cfg': {'backend', 'timeout', 'init_backend', 'init_method'},
        'auto_scale_lr': {'enable', 'base_batch_size'},
    }.get(key)


def _plain(value):
    """``value`` without the ``_scope_`` keys mmengine adds to a scoped base file's dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _copies(cfg, name: str) -> List[str]:
    """The fields under :func:`runner_keys` that hold the value of the top-level variable
    ``name`` (a ``None`` or bool only under the key ``name``: too common to be a copy)."""
    value, found = _plain(cfg[name]), []
    same_name = value is None or isinstance(value, bool)

    def walk(node, path):
        if type(node) is type(value) and node == value and (path[-1] == name or not same_name):
            found.append('.'.join(path))
        elif isinstance(node, (dict, list, tuple)):
            for key, child in (node.items() if isinstance(node, dict) else enumerate(node)):
                walk(child, path + [str(key)])

    keys = runner_keys()
    for key, node in cfg.items():
        if key in keys:
            walk(_plain(node), [key])
    return found


def _check_not_a_variable(cfg, full_key: str) -> None:
    """An override of a variable of the config file (a top-level key no runner reads) changes
    nothing: its value was copied into the fields when the file was read."""
    name = str(full_key).split('.')[0]
    if name not in cfg or name in runner_keys():
        return
    fields = _copies(cfg, name)
    if fields:
        more = f' ... ({len(fields)} fields)' if len(fields) > 6 else ''
        which = 'that field' if len(fields) == 1 else 'those fields'
        raise ValueError(f'--cfg-options {full_key}: a variable of the config file, copied into '
                         f'{", ".join(fields[:6])}{more} when the file was read, so overriding it '
                         f'changes nothing; set {which} instead')
    raise ValueError(f'--cfg-options {full_key}: a variable of the config file that no field holds '
                     '(unused, or transformed when the file was read), so overriding it changes '
                     f'nothing; set the fields built from it, or pass {ALLOW_NEW_FLAG} if your own '
                     'code reads it')


def check_cfg_options(cfg, options: Optional[dict], allow_new: bool = False) -> None:
    """Unless ``allow_new``, a ``ValueError`` naming the closest key for an ``--cfg-options`` key
    that is not in ``cfg`` (a new argument of a dict with a ``type``, or of an untyped dict the
    Runner reads, is accepted), and naming the fields for a variable of the config file."""
    if not options or allow_new:
        return
    for full_key in options:
        _check_not_a_variable(cfg, full_key)
        node, path = cfg._cfg_dict, []
        parts = str(full_key).split('.')
        for part in parts:
            where = '.'.join(path) or 'the top level'
            if isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise ValueError(f'--cfg-options {full_key}: {where} is a list of {len(node)} '
                                     f'items; {part!r} is not one of its indices '
                                     f'0..{len(node) - 1}')
                node = node[int(part)]
            elif isinstance(node, dict):
                if part not in node:
                    if 'type' in node:
                        break  # a new argument of the class this dict builds
                    accepted = _untyped_arguments(path)
                    if accepted is not None and part in accepted:
                        break  # a new argument the Runner passes on
                    close = _closest(part, list(node) + sorted(accepted or ()))
                    hint = (f'did you mean {".".join(path + [close])!r}?' if close else
                            f'the keys at {where} are {sorted(map(str, node))[:15]}')
                    raise ValueError(
                        f'--cfg-options {full_key}: the config has no '
                        f'{".".join(path + [part])!r}; {hint} (mmengine would add it as a new key '
                        f'that nothing reads). Pass {ALLOW_NEW_FLAG} to add new keys on purpose.')
                node = node[part]
            else:
                raise ValueError(f'--cfg-options {full_key}: {where} is a '
                                 f'{type(node).__name__} ({node!r}), not a dict or list; pass '
                                 f'{ALLOW_NEW_FLAG} to replace it')
            path.append(part)


def config_file(config: str) -> str:
    """The file of a config path, or of ``pkg::rel/path.py`` in an installed package's
    ``.mim/configs``; ``FileNotFoundError`` names what is missing."""
    full = config
    if '::' in config:
        pkg, rel = config.split('::', 1)
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f'config {config}: package {pkg!r} is not installed')
        full = osp.join(list(spec.submodule_search_locations)[0], '.mim', 'configs', rel)
    if not osp.isfile(full):
        raise FileNotFoundError(f'config file not found: {config!r} (a path, or '
                                "'<package>::<dir>/<name>.py', e.g. 'mmpretrain::mae/...')")
    return full


def _syntax_error(path: str, config: str) -> Optional[SyntaxError]:
    """The error naming the file and line of the first of ``path`` and its local ``_base_`` files
    (depth first) that does not compile; mmengine's names ``"<unknown>"``."""
    try:
        with open(path, encoding='utf-8') as f:
            source = f.read()
        compile(source, path, 'exec')
    except SyntaxError as e:  # (every file mmengine read before the bad one exists)
        base = '' if path == config else f' (a _base_ of {config})'
        return SyntaxError(f'syntax error in {osp.normpath(path)}, line {e.lineno}{base}: {e.msg}')
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '_base_'
                                                for t in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                return None
            local = [b for b in ([bases] if isinstance(bases, str) else bases)
                     if '::' not in b and b.endswith('.py')]  # (not json/yaml bases)
            for base in local:
                error = _syntax_error(osp.join(osp.dirname(path), base), config)
                if error:
                    return error
    return None


def apply_cfg_options(cfg, options: Optional[dict], allow_new: bool = False) -> None:
    """Merge ``options`` into ``cfg`` after :func:`check_cfg_options`; an overridden
    ``custom_imports`` is imported (``Config.fromfile`` imported the file's)."""
    if not options:
        return
    check_cfg_options(cfg, options, allow_new)
    cfg.merge_from_dict(options)
    if any(str(key).split('.')[0] == 'custom_imports' for key in options):
        import_modules_from_strings(**cfg.custom_imports)


def load_config(config, cfg_options: Optional[dict] = None, allow_new_keys: bool = False):
    """A ``Config`` from a file, ``pkg::rel/path.py`` or a ``Config`` (copied), read after
    :func:`deepmim_mm.compat.apply_all`, with ``cfg_options`` applied (:func:`apply_cfg_options`).
    A syntax error names its file and line."""
    from deepmim_mm.compat import apply_all
    if isinstance(config, Config):
        cfg = config.copy()
    else:
        apply_all()
        path = config_file(str(config))
        try:
            cfg = Config.fromfile(path)
        except SyntaxError as e:
            raise (_syntax_error(path, path) or e) from None
    apply_cfg_options(cfg, cfg_options, allow_new_keys)
    return cfg


def check_hook_args(cfg) -> None:
    """An unknown argument of a ``CheckpointHook`` in ``default_hooks`` / ``custom_hooks`` is a
    ``ValueError`` naming the field: mmengine passes them to ``save_checkpoint``, which fails only
    at the first save (other hooks fail when the Runner builds them). Hook types are looked up in
    the root registry, where mmengine and the plugin register theirs, or by a scoped name."""
    hooks = [(f'default_hooks.{name}', hook)
             for name, hook in (cfg.get('default_hooks') or {}).items()]
    hooks += [(f'custom_hooks.{i}', hook) for i, hook in enumerate(cfg.get('custom_hooks') or [])]
    accepted = set(inspect.signature(CheckpointHook).parameters) - {'kwargs'}
    for where, hook in hooks:
        cls = hook.get('type') if isinstance(hook, dict) else None
        cls = HOOKS.get(cls) if isinstance(cls, str) else cls
        if not (inspect.isclass(cls) and issubclass(cls, CheckpointHook)):
            continue
        errors = []
        for name in hook:
            if name not in accepted | {'type', 'priority', '_scope_'}:
                close = _closest(name, accepted)
                errors.append(f'{name!r}' + (f' (did you mean {close!r}?)' if close else ''))
        if errors:
            raise ValueError(f'{where} ({cls.__name__}): unknown argument(s) {", ".join(errors)};'
                             ' mmengine would only fail at the first save')


def check_output_folder(path: str, flag: str) -> None:
    """An output folder (``flag`` names its option) may not exist yet, but may not be a file."""
    if osp.exists(path) and not osp.isdir(path):
        raise ValueError(f'{flag} {path}: a file, not a folder; give a folder (it is created '
                         'when missing)')


def check_work_dir(work_dir: str, resume: bool = False) -> None:
    """The work dir must be a folder (or not exist yet); with ``resume`` (``--resume`` alone),
    its ``last_checkpoint``, when there is one, must name an existing file."""
    check_output_folder(work_dir, '--work-dir')
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not resume or not osp.isfile(pointer):
        return
    with open(pointer) as f:
        target = f.read().strip()
    how = (f'give the checkpoint with --resume PATH, or remove {pointer} to train from '
           'scratch')
    if not target:
        raise ValueError(f'--resume: {pointer} is empty (an interrupted write?); {how}')
    if not osp.isfile(target):
        raise FileNotFoundError(f'--resume: {pointer} names {target}, which does not exist '
                                f'(moved or deleted?); {how}')
