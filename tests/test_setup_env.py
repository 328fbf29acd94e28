"""tools/setup_env.sh refuses an interpreter torch 2.14.1 has no wheels for, before creating
anything, and says which versions it accepts."""
import os
import stat
import subprocess

from conftest import ROOT

FAKE_PYTHON_39 = '''#!/usr/bin/env bash
# Stands in for a CPython 3.9: fails the set-up's version check, reports its version.
case "$*" in
  *python_version*) echo 3.9.18 ;;
  *) exit 1 ;;
esac
'''


def test_setup_refuses_python_outside_3_10_to_3_13(tmp_path):
    fake = tmp_path / 'python3.9'
    fake.write_text(FAKE_PYTHON_39)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    venv = tmp_path / 'venv'
    env = dict(os.environ, PYTHON=str(fake), VENV=str(venv))
    proc = subprocess.run(['bash', 'tools/setup_env.sh'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert 'is Python 3.9.18' in proc.stderr, proc.stderr
    assert 'CPython 3.10-3.13' in proc.stderr, proc.stderr
    assert not venv.exists()
