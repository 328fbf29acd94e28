#!/usr/bin/env bash
# Usage: [NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500] \
#          tools/dist_train.sh CONFIG GPUS [train.py args...]   (see _launch.sh)
set -euo pipefail
source "$(dirname "$0")/_launch.sh"
usage_unless 2 "CONFIG GPUS [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options ...]" "$@"
dist_launch train.py "$2" "$1" --launcher pytorch "${@:3}"
