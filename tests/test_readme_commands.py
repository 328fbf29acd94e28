"""Every `--cfg-options` override in a README command names a key the command's config has (or a
new argument a class or the Runner takes): a README must not teach a silently ignored key.

The commands themselves run in the tests of their tools; this checks the overrides as written,
against the configs they are written for."""
import functools
import glob
import os.path as osp
import re
import shlex

import pytest

from conftest import ROOT

READMES = [osp.join(ROOT, 'README.md')] + sorted(
    glob.glob(osp.join(ROOT, 'configs', '*', 'README.md'))) + sorted(
    glob.glob(osp.join(ROOT, 'docs', '**', '*.md'), recursive=True))


def readme_overrides():
    """``[(readme, config, {key: value})]`` for every command with a config file and
    ``--cfg-options`` in a fenced code block."""
    found = []
    for readme in READMES:
        text = open(readme).read()
        for lang, block in re.findall(r'```(\w*)\n(.*?)```', text, flags=re.S):
            if lang not in ('', 'bash', 'sh', 'shell'):
                continue
            for command in block.replace('\\\n', ' ').splitlines():
                if '--cfg-options' not in command:
                    continue
                tokens = shlex.split(command, comments=True)
                configs = [t for t in tokens if t.startswith('configs/') and t.endswith('.py')]
                if not configs:
                    continue
                start = tokens.index('--cfg-options') + 1
                options = {}
                for token in tokens[start:]:
                    if token.startswith('--'):
                        break
                    key, _, value = token.partition('=')
                    options[key] = value
                found.append((osp.relpath(readme, ROOT), configs[0], options))
    return found


OVERRIDES = readme_overrides()


def test_readmes_have_overrides_to_check():
    assert len(OVERRIDES) >= 10, OVERRIDES


@pytest.mark.parametrize('readme,config,options', OVERRIDES,
                         ids=[f'{r}:{osp.basename(c)}:{",".join(o)}' for r, c, o in OVERRIDES])
def test_readme_override_keys_exist(readme, config, options):
    from deepmim_mm.utils import check_cfg_options
    assert osp.isfile(osp.join(ROOT, config)), f'{readme}: {config} does not exist'
    check_cfg_options(_config(config), options)


@functools.lru_cache(maxsize=None)
def _config(path):
    """Each config loaded once (the READMEs name some several times); only read."""
    from deepmim_mm.utils import load_config
    return load_config(osp.join(ROOT, path))
