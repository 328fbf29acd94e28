#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]   (see _launch.sh)
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 CONFIG CHECKPOINT GPUS [--work-dir DIR] [--cfg-options ...]" >&2
  exit 2
fi
source "$(dirname "$0")/_launch.sh"
dist_launch test.py "$3" "$1" "$2" --launcher pytorch "${@:4}"
