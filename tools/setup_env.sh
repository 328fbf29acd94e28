#!/usr/bin/env bash
# Creates a virtual environment with an OpenMMLab 2.x stack on PyTorch 2.14.1 and installs
# deepmim_mm in editable mode; a rerun finds what is already there (pip: "already satisfied").
# STACK=upstream (default, VENV <repo>/.venv) or onedl (the OneDL fork, VENV <repo>/.venv-onedl):
# the two install the same module names, so each has its own VENV (docs/en/get_started.md).
# mmcv has no wheel for this torch: its compiled ops come from the first wheel for this Python
# that loads ($MMCV_WHEEL, ../shared/wheels/ on CPU hosts, the cache of an earlier build), else
# from a build of PyPI's source. Environment: STACK, PYTHON (default python3.11, else python3),
# VENV, MMCV_WHEEL, MAX_JOBS (default: number of cores), DEEPMIM_SKIP_MMCV=1 (no compiled ops;
# mmseg and mmdet will not import).
set -Eeuo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/deepmim-mm/wheels"
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
STACK="${STACK:-upstream}"
step() { printf '\n==> [setup] %s\n' "$*"; }
fail() { printf '\n!! [setup] FAILED: %s\n' "$*" >&2; exit 1; }
trap 'fail "command \"$BASH_COMMAND\" exited with status $? (line $LINENO)"' ERR
case "$STACK" in
  upstream)
    VENV="${VENV:-$ROOT/.venv}"
    MM_PINS=(mmengine==0.10.7 mmpretrain==1.2.0 mmsegmentation==1.2.2 mmdet==3.3.0)
    MM_DEPS=(--no-deps)
    MMCV_DIST=mmcv MMCV_VERSION=2.1.0 OTHER_STACK_DIST=onedl-mmengine ;;
  onedl)
    VENV="${VENV:-$ROOT/.venv-onedl}"
    MM_PINS=(onedl-mmengine==0.10.12 onedl-mmpretrain==1.3.6 onedl-mmsegmentation==1.4.2
             onedl-mmdetection==3.5.1)
    MM_DEPS=()
    MMCV_DIST=onedl-mmcv MMCV_VERSION=2.3.6 OTHER_STACK_DIST=mmengine ;;
  *) fail "STACK=$STACK; accepted: upstream (default), onedl" ;;
esac
MMCV_FILE="${MMCV_DIST//-/_}"  # how wheel and sdist files name the distribution

# ---------------------------------------------------------------------------------------------
step "1/7 Python virtual environment at $VENV for the $STACK stack (CPython 3.10-3.13)"
PYV="$VENV/bin/python"
PY="$PYV"  # an existing environment's interpreter, else the one to make it with
[ -x "$PY" ] || PY="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
[ -n "$PY" ] || fail "no python3.11 or python3 found; set PYTHON=/path/to/python3.1x (3.10-3.13)"
"$PY" -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 13)' >/dev/null 2>&1 \
  || fail "$PY is Python $("$PY" -c 'import platform; print(platform.python_version())' \
  2>/dev/null || echo '?'); torch 2.14.1 publishes wheels for CPython 3.10-3.13 only: set \
PYTHON (and remove an existing VENV)"
if [ -x "$PYV" ]; then echo "exists"; else "$PY" -m venv "$VENV"; fi
PIP=("$PYV" -m pip --disable-pip-version-check)
PYTAG="$("$PYV" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
echo "$("$PYV" -c 'import platform; print("Python", platform.python_version())') ($PYTAG)"

if "$PYV" -c "from importlib.metadata import version; version('$OTHER_STACK_DIST')" 2>/dev/null
then
  fail "$VENV has $OTHER_STACK_DIST installed, which is not of STACK=$STACK; the stacks share \
module names: give each its own VENV"
fi

step "2/7 build tools (setuptools>=77,<81: torch 2.14 needs >=77, mmengine needs pkg_resources)"
"${PIP[@]}" install -q 'pip>=23' 'setuptools>=77,<81' wheel

step "3/7 PyTorch: ${TORCH_PINS[*]}"
"${PIP[@]}" install "${TORCH_PINS[@]}"

step "4/7 pure-Python requirements and OpenMMLab packages: ${MM_PINS[*]} ${MM_DEPS[*]}"
reqs=()
for r in runtime tests mim lint docs; do reqs+=(-r "$ROOT/requirements/$r.txt"); done
"${PIP[@]}" install -q "${reqs[@]}"
"${PIP[@]}" install "${MM_DEPS[@]}" "${MM_PINS[@]}"
"${PIP[@]}" install -q --no-deps openmim==0.3.9  # on both stacks: see requirements/mim.txt

# ---------------------------------------------------------------------------------------------
step "5/7 $MMCV_DIST $MMCV_VERSION with compiled ops"
mmcv_ok() { "$PYV" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'; mmcv.ops.nms" >/dev/null 2>&1; }

try_wheel() {  # $1: wheel path; installs it and keeps it only if mmcv.ops loads
  [ -f "$1" ] || return 1
  echo "trying $1"
  "${PIP[@]}" install -q --no-deps --force-reinstall "$1" || return 1
  if mmcv_ok; then echo "mmcv ops load from $1"; return 0; fi
  echo "  $1 does not load against this torch; discarding it"
  "${PIP[@]}" uninstall -q -y "$MMCV_DIST" || true
  return 1
}

build_mmcv() {  # for $tag; prints the build's progress on stderr and the wheel's path on stdout
  local tmp; tmp="$(mktemp -d)"
  {
  echo "building $MMCV_DIST $MMCV_VERSION from source in $tmp (11-30 min on 2 cores)"
  "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation \
    "$MMCV_DIST==$MMCV_VERSION" -d "$tmp"
  tar -xzf "$tmp"/*-"$MMCV_VERSION".tar.gz -C "$tmp"
  local src; src="$(ls -d "$tmp"/*-"$MMCV_VERSION"/)"
  # torch 2.14's headers need C++20 (mmcv 2.1.0's pkg_resources import works: setuptools < 81)
  sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  grep -q -- '-std=c++20' "$src/setup.py" || fail "the -std=c++20 edit of $src/setup.py did not apply"
  local cuda=0; [ "$tag" = cuda ] && cuda=1
  (cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA=$cuda MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
     "${PIP[@]}" wheel -v --no-build-isolation --no-deps . -w "$tmp/dist")
  local whl; whl="$(ls "$tmp"/dist/"$MMCV_FILE"-*.whl)"
  # Strip debug symbols from the extension (82 MB -> 2 MB) and repack.
  (cd "$tmp/dist" && "$PYV" -m wheel unpack "$whl" -d unpacked \
     && find unpacked -name '_ext*.so' -exec strip --strip-debug {} + \
     && rm "$whl" && "$PYV" -m wheel pack unpacked/"$MMCV_FILE-$MMCV_VERSION" -d .) || true
  mkdir -p "$CACHE/$tag"
  cp "$whl" "$CACHE/$tag/"  # repacked under the same name
  rm -rf "$tmp"
  } >&2
  echo "$CACHE/$tag/$(basename "$whl")"
}

if [ "${DEEPMIM_SKIP_MMCV:-0}" = 1 ]; then
  echo "DEEPMIM_SKIP_MMCV=1: skipping (mmseg and mmdet need mmcv's ops and will not import)"
elif mmcv_ok; then
  echo "$MMCV_DIST $MMCV_VERSION with ops already installed"
else
  tag=cpu  # a build for a visible GPU has CUDA ops too
  "$PYV" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null && tag=cuda
  candidates=("${MMCV_WHEEL:-}")  # then wheels of this Python's tag; the shared ones: CPU ops
  [ "$tag" = cpu ] && candidates+=("$ROOT"/../shared/wheels/"$MMCV_FILE-$MMCV_VERSION-$PYTAG"-*.whl)
  candidates+=("$CACHE/$tag/$MMCV_FILE-$MMCV_VERSION-$PYTAG"-*.whl)
  found=
  for w in "${candidates[@]}"; do try_wheel "$w" && found=1 && break; done
  if [ -z "$found" ]; then
    echo "no prebuilt $MMCV_DIST wheel matches; building one"
    built="$(build_mmcv)"
    try_wheel "$built" || fail "the mmcv wheel built from source does not load ($built)"
  fi
fi

# ---------------------------------------------------------------------------------------------
step "6/7 deepmim_mm (editable)"
"${PIP[@]}" install -q --no-build-isolation --no-deps -e "$ROOT"
# mim looks for .mim/ (setup.py links it) in site-packages/deepmim_mm for a PEP 660 editable
# install: link that to the source tree, as `flit install --symlink` does.
SITE="$("$PYV" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ -e "$SITE/deepmim_mm" ] && [ ! -L "$SITE/deepmim_mm" ]; then
  fail "$SITE/deepmim_mm is a non-editable copy of the package; pip uninstall deepmim_mm and rerun"
fi
ln -sfn "$ROOT/deepmim_mm" "$SITE/deepmim_mm"
echo "mim: $SITE/deepmim_mm -> $ROOT/deepmim_mm"

step "7/7 checking the stack imports"
mods=(torch torchvision mmengine mmpretrain deepmim_mm)
[ "${DEEPMIM_SKIP_MMCV:-0}" = 1 ] || mods+=(mmcv mmcv.ops mmseg mmseg.models mmdet mmdet.models)
"$PYV" - "${mods[@]}" <<'EOF'
import importlib
import sys
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    if hasattr(module, '__version__'):
        print(name, module.__version__)
EOF
echo
echo "==> [setup] done: activate with 'source $VENV/bin/activate'"
