#!/usr/bin/env bash
# Every GPU figure of docs/en/advanced_guides/performance.md in one run on a GPU host with torch
# only: `prepare` here (fills .gpu_bundle/), then `OUT=DIR ... run [budget_s]` on the GPU host;
# SMOKE=1 DEVICE=cpu rehearses it on a CPU (parts, outputs: docs/en/notes/input-and-benchmarks.md).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUNDLE=$ROOT/.gpu_bundle
MODE=${1:-run}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
if [ "${SMOKE:-0}" = 1 ]; then
  BS=2 WARM=1 STEPS=1 COUNT=16 WORKERS=1 COMPILE=compile.backend=eager
else
  BS=256 WARM=3 STEPS=10 COUNT=1024 WORKERS=14 COMPILE=compile=True
fi

prepare() {
  local py=${PYTHON:-$ROOT/.venv/bin/python}
  [ -x "$py" ] || py=$(command -v python3)
  local site
  site=$("$py" -c 'import mmengine, os; print(os.path.dirname(os.path.dirname(mmengine.__file__)))')
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/site" "$BUNDLE/setuptools_site" "$BUNDLE/torchcodec"
  # pure-Python packages the OpenMMLab stack imports that a bare torch image lacks
  for pkg in mmengine mmcv mmpretrain addict yapf yapf_third_party termcolor mat4py modelindex \
             ordered_set lazy_importer importlib_metadata platformdirs; do
    [ -d "$site/$pkg" ] && cp -r "$site/$pkg" "$BUNDLE/site/"
    cp -r "$site/$pkg"-[0-9]*.dist-info "$BUNDLE/site/" 2>/dev/null || true
  done
  for pkg in setuptools pkg_resources _distutils_hack; do  # pkg_resources for pkg:: configs
    cp -r "$site/$pkg" "$BUNDLE/setuptools_site/"
  done
  find "$BUNDLE" -name __pycache__ -prune -exec rm -rf {} +
  rm -f "$BUNDLE"/site/mmcv/_ext*.so  # built for this machine's Python; ops are not needed
  for v in 0.17.0 0.16.0; do  # the GPU host's torch decides which one loads
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      -d "$BUNDLE/torchcodec/$v" "torchcodec==$v" || echo "torchcodec $v: no cp312 wheel"
  done
  du -sh "$BUNDLE"
  echo "carry .gpu_bundle, then: OUT=\$OUT bash tools/analysis/gpu_benchmarks.sh run"
}

# ---------------------------------------------------------------------------- run
setup_env() {
  export PYTHONPATH=$BUNDLE/site:$ROOT PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
  "$PY" -c 'import pkg_resources' 2>/dev/null \
    || export PYTHONPATH=$PYTHONPATH:$BUNDLE/setuptools_site
  for v in 0.17.0 0.16.0; do
    rm -rf /tmp/tc_site
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/tc_site \
      "$BUNDLE"/torchcodec/$v/*.whl >/dev/null 2>&1 || continue
    if PYTHONPATH=/tmp/tc_site:$PYTHONPATH "$PY" -c "import glob, torch
from torchcodec.decoders import decode_jpeg
f = sorted(glob.glob('deepmim_mm/demo/images/*/*/*.JPEG'))[0]
decode_jpeg([torch.frombuffer(bytearray(open(f, 'rb').read()), dtype=torch.uint8)], device='$DEVICE')
" >>"$OUT/log.txt" 2>&1; then
      export PYTHONPATH=/tmp/tc_site:$PYTHONPATH
      echo "torchcodec $v decodes on $DEVICE" | tee -a "$OUT/env.txt"
      return
    fi
  done
  echo "no TorchCodec wheel loads here: the device path decodes with Pillow" | tee -a "$OUT/env.txt"
}

START=$(date +%s)
BUDGET=${2:-540}
left() { echo $((BUDGET - ($(date +%s) - START))); }

# part NAME LIMIT_S COMMAND...: run in its own process if the budget allows, log everything
part() {
  local name=$1 limit=$2; shift 2
  if [ "$(left)" -lt "$limit" ] && [ "$(left)" -lt 60 ]; then
    echo "== $name: skipped ($(left) s of the budget left)" | tee -a "$OUT/log.txt"
    return
  fi
  [ "$(left)" -lt "$limit" ] && limit=$(left)
  echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/log.txt"
  timeout -k 10 "$limit" "$@" >>"$OUT/log.txt" 2>&1
  echo "== $name: exit $? after $(( $(date +%s) - START )) s" | tee -a "$OUT/log.txt"
}

run() {
  : "${OUT:?set OUT to the results folder}"
  mkdir -p "$OUT" "$OUT/parts"
  { nvidia-smi; "$PY" -c 'import torch, sys; print(sys.version, torch.__version__,
    torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())'; nproc; \
  } >"$OUT/env.txt" 2>&1
  setup_env
  local bench=tools/analysis/benchmark.py data=tools/analysis/benchmark_data.py
  local deepmim=configs/pretrain/deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py
  local clip=configs/pretrain/deepmim-clip_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py
  local amp=bf16
  [ "$DEVICE" = cpu ] && amp=fp32
  local common=(--device "$DEVICE" --batch-size $BS --amp $amp --fused-adamw)
  local jpegs=/tmp/jpeg_500x375
  part make-set 90 "$PY" $data make-set $jpegs --size 500 375 --count $COUNT
  part decoders 60 "$PY" $data decoders --data $jpegs --device "$DEVICE" --batch-size $BS \
    --batches 10 --json "$OUT/parts/decoders.json"
  part train 180 "$PY" $bench $deepmim $clip --labels deepmim-pixel deepmim-clip "${common[@]}" \
    --random-teachers --warmup $WARM --steps $STEPS --json "$OUT/parts/train.json"
  part e2e-device 150 "$PY" $data end-to-end $deepmim --data $jpegs --path device \
    "${common[@]}" --workers $WORKERS --warmup $WARM --steps $((STEPS + 5)) \
    --json "$OUT/parts/e2e_device.json"
  part e2e-standard 120 "$PY" $data end-to-end $deepmim --data $jpegs --path standard \
    "${common[@]}" --workers $WORKERS --warmup $WARM --steps $STEPS \
    --json "$OUT/parts/e2e_standard.json"
  # compiled: one process per config (a compile takes about a minute), so what finishes is kept
  local mae=mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py
  for c in mae:$mae deepmim-pixel:$deepmim deepmim-clip:$clip; do
    part "compiled-${c%%:*}" 150 "$PY" $bench "${c#*:}" --baseline none --labels "${c%%:*}" \
      "${common[@]}" --random-teachers --warmup $WARM --steps $STEPS \
      --cfg-options $COMPILE optim_wrapper.constructor=PlainGroupsOptimWrapperConstructor \
      --json "$OUT/parts/compiled_${c%%:*}.json"
  done
  "$PY" tools/analysis/gpu_summary.py "$OUT"
  rm -rf "$OUT/parts"  # merged into results.json (the tool brings back at most 8 files)
}

case "$MODE" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: $0 prepare | run [budget_s]" >&2; exit 2 ;;
esac
