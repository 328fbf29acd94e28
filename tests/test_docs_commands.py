"""Every shell command the documentation shows runs as written, and every relative link resolves.

For each command of a fenced ``bash``/``sh``/``shell``/``console`` block in README.md,
configs/*/README.md and docs/**/*.md: the tool exists (``tools/*.py``, ``tools/*.sh``, ``mim``,
``python -m``); its arguments parse with the parser the tool itself builds (a made-up flag or a
missing positional fails); every config file it names exists; every ``--cfg-options`` key is one the
config has (or a new argument a class or the Runner takes). The tools' behaviour is tested in their
own tests; here only what the docs write is checked, without running anything.
"""
import functools
import glob
import importlib
import os.path as osp
import re
import shlex
from argparse import ArgumentParser
from itertools import takewhile
from unittest import mock

import pytest

from conftest import ROOT, run_main

PAGES = sorted(['README.md'] + glob.glob('configs/*/README.md', root_dir=ROOT) +
               glob.glob('docs/**/*.md', root_dir=ROOT, recursive=True))
SHELL = ('bash', 'sh', 'shell', 'console')
# a fenced block: its language (also MyST's ```{code-block} bash) and its text
FENCE = re.compile(r'^(```+|~~~+)(?:\{[\w-]+\} *)?(\w*)[^\n]*\n(.*?)^\1', flags=re.S | re.M)
# programs a page may call whose arguments are not ours to check
EXTERNAL = {'pip', 'git', 'cd', 'export', 'source', 'conda', 'nvidia-smi', 'sphinx-build', 'ls',
            'cat', 'tensorboard', 'torchrun', 'srun', 'sbatch', 'mkdir', 'wget', 'curl', 'tar'}
# tools/*.sh that run a python tool: (tool, arguments the script requires, the tool's argv)
LAUNCHERS = {
    'dist_train.sh': ('train.py', 2, lambda a: [a[0], *a[2:]]),
    'dist_test.sh': ('test.py', 3, lambda a: [a[0], a[1], *a[3:]]),
    'slurm_train.sh': ('train.py', 4, lambda a: [a[2], '--work-dir', *a[3:]]),
    'slurm_test.sh': ('test.py', 4, lambda a: a[2:]),
}
PARSE_ARGS = ArgumentParser.parse_args


def shell_commands(text):
    """``[(line, command)]`` of the fenced shell blocks of a Markdown text: continuation lines
    joined, a leading ``$ `` prompt dropped (in ``console`` blocks only the lines with one are
    commands), blank and comment lines left out."""
    found = []
    for match in FENCE.finditer(text):
        if match.group(2) not in SHELL:
            continue
        line, command = text.count('\n', 0, match.start(3)) + 1, ''
        for number, raw in enumerate(match.group(3).splitlines(), line):
            prompt = re.match(r'\s*\$ ', raw)
            if not command:
                if match.group(2) == 'console' and not prompt or re.match(r':[\w-]+:', raw):
                    continue  # output; a MyST directive's option
                start = number
            command += raw[prompt.end() if prompt else 0:]
            if command.endswith('\\'):
                command = command[:-1] + ' '
                continue
            if shlex.split(command, comments=True):
                found.append((start, command))
            command = ''
    return found


def check_command(command):
    """Raise ``AssertionError`` naming what in ``command`` does not exist or does not parse."""
    tokens = shlex.split(command, comments=True)
    while re.fullmatch(r'[A-Z_][A-Z0-9_]*=\S*', tokens[0]):  # VAR=value prefixes
        tokens.pop(0)
    assert '...' not in tokens, 'an elided command (...): write it in full so it can be checked'
    program, args = tokens[0], tokens[1:]
    if program in EXTERNAL:
        return
    if program == 'bash' or program.endswith('.sh'):
        script, args = (args[0], args[1:]) if program == 'bash' else (program, args)
        assert osp.isfile(osp.join(ROOT, script)), f'{script} does not exist'
        if osp.basename(script) in LAUNCHERS:
            tool, count, to_argv = LAUNCHERS[osp.basename(script)]
            assert len(args) >= count, f'{script} takes {count} arguments before the tool\'s'
            check_tool(f'tools/{tool}', to_argv(args))
    elif re.fullmatch(r'(\S*/)?python[\d.]*', program):
        if args[0] != '-m':
            check_tool(args[0], args[1:])
        elif args[1] == 'mim':
            check_mim(args[2:])
        else:
            assert importlib.util.find_spec(args[1]), f'python -m {args[1]}: no such module'
    elif program == 'mim':
        check_mim(args)
    else:
        raise AssertionError(f'{program}: not a tool of this repository, python -m, mim or a '
                             'program listed in EXTERNAL')


def check_tool(script, argv):
    """``script`` exists, ``argv`` parses with its parser, the configs and overrides exist."""
    assert osp.isfile(osp.join(ROOT, script)), f'{script} does not exist'
    with pytest.raises(Parsed):  # the tool built its parser and parsed argv; it runs no further
        with mock.patch('argparse.ArgumentParser.parse_args', parse_then_stop):
            status = run_main(script, *argv)
            raise AssertionError(f'{script} exited {status} before parsing its arguments')
    configs = [a for a in argv if a.endswith('.py')]
    for config in configs:
        _config(config)
    if '--cfg-options' in argv:
        from deepmim_mm.utils import check_cfg_options
        assert configs, '--cfg-options on a command that names no config file'
        options = takewhile(lambda t: not t.startswith('--'),
                            argv[argv.index('--cfg-options') + 1:])
        check_cfg_options(_config(configs[0]), dict(o.partition('=')[::2] for o in options))


class Parsed(Exception):
    """Raised in place of running a tool once its arguments parsed."""


def parse_then_stop(parser, args=None, namespace=None):
    """``ArgumentParser.parse_args`` that fails the check on a parse error, else stops the tool."""
    def error(message):
        raise AssertionError(f'{parser.prog}: {message}')
    parser.error = error
    PARSE_ARGS(parser, args, namespace)
    raise Parsed(parser.prog)


def check_mim(args):
    """``mim <command>``'s own options parse; the arguments it hands to a tool parse with it."""
    import click
    command = importlib.import_module(f'mim.commands.{args[0]}').cli
    try:
        params = command.make_context(f'mim {args[0]}', list(args[1:])).params
    except click.UsageError as e:
        raise AssertionError(f'mim {args[0]}: {e.format_message()}') from None
    assert params.get('package', 'deepmim_mm') == 'deepmim_mm', params['package']
    other = list(params.get('other_args', ()))
    if args[0] in ('train', 'test'):
        config = _named_config(params['config'])
        checkpoint = [params['checkpoint']] if params.get('checkpoint') else []
        check_tool(f'tools/{args[0]}.py', [config, *checkpoint, *other])
    elif args[0] == 'run':
        tools = glob.glob(f'tools/**/{params["command"]}.py', root_dir=ROOT, recursive=True)
        assert tools, f'mim run: no tools/**/{params["command"]}.py'
        check_tool(tools[0], other)


def _named_config(name):
    """The configs/*/ file mim finds for a config given by name."""
    found = glob.glob(f'configs/*/{name}', root_dir=ROOT)
    assert found, f'mim: no config named {name} under configs/*/'
    return found[0]


@functools.lru_cache(maxsize=None)
def _config(path):
    """Each config loaded once (the pages name some many times), as the tools load it (after the
    fixes for the stack: ``mmseg::`` bases on the OneDL fork); only read."""
    from deepmim_mm.utils import load_config
    try:
        return load_config(path if '::' in path else osp.join(ROOT, path))
    except FileNotFoundError as e:
        raise AssertionError(str(e)) from None


def broken_links(text, page):
    """Relative link and image targets of a Markdown text (outside code) that do not exist from
    ``page``."""
    text = re.sub(r'`[^`\n]*`', '', FENCE.sub('', text))
    targets = re.findall(r'\]\(<?([^)\s>]+)>?(?:\s+"[^"]*")?\)', text)
    targets += re.findall(r'^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)', text, flags=re.M)
    targets += re.findall(r'<(?:img|a)\s[^>]*?(?:src|href)="([^"]+)"', text)  # HTML in Markdown
    return [t for t in targets if not re.match(r'[a-z][a-z0-9+.-]*:|#', t) and not osp.exists(
        osp.join(ROOT, osp.dirname(page), t.split('#')[0]))]


COMMANDS = [(f'{page}:{line}', command) for page in PAGES
            for line, command in shell_commands(open(osp.join(ROOT, page)).read())]


def test_pages_have_commands_to_check():
    assert len(COMMANDS) >= 30, COMMANDS


@pytest.mark.parametrize('where,command', COMMANDS, ids=[w for w, _ in COMMANDS])
def test_docs_command(where, command):
    check_command(command)


@pytest.mark.parametrize('page', PAGES)
def test_relative_links_resolve(page):
    assert broken_links(open(osp.join(ROOT, page)).read(), page) == []


DEMO = 'configs/pretrain/deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py'
TRAIN = f'python tools/train.py {DEMO}'


@pytest.mark.parametrize('command,cause', [
    (f'{TRAIN} --work-dri x', 'unrecognized arguments: --work-dri'),
    ('python tools/train.py configs/pretrain/deepmim_vit-tiny.py', 'config file not found'),
    (f'{TRAIN} --cfg-options train_dataloader.batch_sise=2', 'batch_sise'),
    (f'tools/dist_test.sh {DEMO} 8', 'takes 3'),
    (f'python tools/test.py {DEMO}', 'required: checkpoint'),
    ('mim train deepmim_mm no_such_config.py', 'no config named'),
    ('python tools/analysis/no_such_tool.py x', 'does not exist'),
    ('make docs', 'not a tool'),
])
def test_checker_fails_on_made_up_commands(command, cause):
    page = f'Text.\n\n```bash\n# a comment\n{command} \\\n  # trailing\n```\n'
    [(line, found)] = shell_commands(page)
    assert line == 5
    with pytest.raises((AssertionError, ValueError), match=re.escape(cause)):
        check_command(found)


def test_console_and_myst_blocks_are_read():
    page = ('```console\n$ python tools/train.py \\\n    x.py\noutput\n```\n'
            '```{code-block} bash\n:caption: c\nmim search deepmim_mm\n```\n')
    assert [(line, c.split()) for line, c in shell_commands(page)] == [
        (2, ['python', 'tools/train.py', 'x.py']), (8, ['mim', 'search', 'deepmim_mm'])]


def test_checker_fails_on_a_made_up_link():
    page = ('[ok](../configs/pretrain/README.md#results) [web](https://x.org) [gone](no_page.md)\n'
            '`[in code](not_checked.md)`\n[ref]: ../tools/nope.py\n<img src="_static/no.png"/>\n')
    assert broken_links(page, 'docs/index.md') == ['no_page.md', '../tools/nope.py',
                                                   '_static/no.png']
