#!/usr/bin/env bash
# Usage: [GPUS=16 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] \
#          tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
set -euo pipefail
source "$(dirname "$0")/_launch.sh"
usage_unless 4 "PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]" "$@"
slurm_launch "$1" "$2" train.py "$3" --work-dir="$4" --launcher=slurm "${@:5}"
