#!/usr/bin/env bash
# One command: set up .venv (tools/setup_env.sh) and pretrain DeepMIM on the bundled demo images.
#   bash tools/quickstart.sh [WORK_DIR]      (default work_dirs/quickstart; a few minutes on 2 cores)
#   STACK=onedl bash tools/quickstart.sh     (the OneDL fork, in .venv-onedl)
# Prints the checkpoint, the log folder and each level's first and last loss.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK_DIR="${1:-work_dirs/quickstart}"
CONFIG=configs/pretrain/deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py
# Sourced, so that VENV is the environment it chose (STACK=onedl: .venv-onedl); its ERR trap
# names set-up failures only.
source tools/setup_env.sh
trap - ERR

printf '\n==> [quickstart] DeepMIM pretraining of a tiny ViT on deepmim_mm/demo/images (%s)\n' "$CONFIG"
LOG="$(mktemp)"
status=0  # tools/train.py's, whether or not grep finds a line
"$VENV/bin/python" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" 2>&1 | tee "$LOG" \
  | grep --line-buffered -E 'Epoch\(train\)|Saving checkpoint|Error|error' || status=${PIPESTATUS[0]}
if [ "$status" != 0 ]; then
  echo "!! [quickstart] FAILED: tools/train.py exited $status; full output:" >&2
  tail -n 60 "$LOG" >&2
  exit "$status"
fi
rm -f "$LOG"

"$VENV/bin/python" - "$WORK_DIR" <<'PY'
import glob, json, os, sys
work = sys.argv[1]
runs = sorted(glob.glob(os.path.join(work, '2*', 'vis_data', 'scalars.json')))
if not runs:
    sys.exit(f'!! [quickstart] no training log found in {work}')
records = [json.loads(l) for l in open(runs[-1]) if '"loss"' in l]
ckpt = open(os.path.join(work, 'last_checkpoint')).read().strip()
levels = [k for k in records[0] if k.startswith('loss_')]
print('\n==> [quickstart] done')
print(f'checkpoint: {ckpt}')
print(f'logs:       {os.path.dirname(os.path.dirname(runs[-1]))}')
print(f'{"level":<14}{"first iter":>12}{"last iter":>12}')
for k in levels:
    print(f'{k:<14}{records[0][k]:>12.4f}{records[-1][k]:>12.4f}')
print(f'{"total loss":<14}{records[0]["loss"]:>12.4f}{records[-1]["loss"]:>12.4f}')
figures = sorted(glob.glob(os.path.join(os.path.dirname(runs[-1]), 'vis_image', '*.png')))
if figures:
    print(f'reconstructions per level ({len(figures)} PNG): {os.path.dirname(figures[-1])}')
PY
