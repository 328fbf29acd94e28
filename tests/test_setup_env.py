"""tools/setup_env.sh refuses, before installing anything and naming what it accepts: an
interpreter torch 2.14.1 has no wheels for, a STACK it does not know, and an environment that
holds the other stack (the two install the same module names)."""
import os
import stat
import subprocess
import sys

from conftest import ROOT

FAKE_PYTHON_39 = '''#!/usr/bin/env bash
# Stands in for a CPython 3.9: fails the set-up's version check, reports its version.
case "$*" in
  *python_version*) echo 3.9.18 ;;
  *) exit 1 ;;
esac
'''


def setup_env(**env):
    return subprocess.run(['bash', 'tools/setup_env.sh'], cwd=ROOT, env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=60)


def test_setup_refuses_python_outside_3_10_to_3_13(tmp_path):
    fake = tmp_path / 'python3.9'
    fake.write_text(FAKE_PYTHON_39)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    venv = tmp_path / 'venv'
    proc = setup_env(PYTHON=str(fake), VENV=str(venv))
    assert proc.returncode != 0
    assert 'is Python 3.9.18' in proc.stderr, proc.stderr
    assert 'CPython 3.10-3.13' in proc.stderr, proc.stderr
    assert not venv.exists()


def test_setup_refuses_an_unknown_stack(tmp_path):
    venv = tmp_path / 'venv'
    proc = setup_env(STACK='openmmlab', VENV=str(venv))
    assert proc.returncode != 0
    assert 'STACK=openmmlab' in proc.stderr and 'upstream (default), onedl' in proc.stderr
    assert not venv.exists()


def test_setup_refuses_an_environment_of_the_other_stack(tmp_path):
    """A venv (without pip: nothing could be installed) holding upstream's mmengine, given to
    STACK=onedl, and the fork's onedl-mmengine given to the default stack."""
    for stack, other in (('onedl', 'mmengine'), ('upstream', 'onedl_mmengine')):
        venv = tmp_path / stack
        subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
        site = subprocess.run([venv / 'bin' / 'python', '-c',
                               'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                              capture_output=True, text=True, check=True).stdout.strip()
        dist_info = os.path.join(site, f'{other}-0.10.7.dist-info')
        os.makedirs(dist_info)
        with open(os.path.join(dist_info, 'METADATA'), 'w') as f:
            f.write(f'Metadata-Version: 2.1\nName: {other}\nVersion: 0.10.7\n')
        proc = setup_env(STACK=stack, VENV=str(venv))
        assert proc.returncode != 0
        assert f'has {other.replace("_", "-")} installed' in proc.stderr, proc.stderr
        assert f'STACK={stack}' in proc.stderr and '2/7' not in proc.stdout, proc.stdout
