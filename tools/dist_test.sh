#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]   (see _launch.sh)
set -euo pipefail
source "$(dirname "$0")/_launch.sh"
usage_unless 3 "CONFIG CHECKPOINT GPUS [--work-dir DIR] [--cfg-options ...]" "$@"
dist_launch test.py "$3" "$1" "$2" --launcher pytorch "${@:4}"
