#!/usr/bin/env bash
# Usage: [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] \
#          tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
set -euo pipefail
source "$(dirname "$0")/_launch.sh"
usage_unless 4 "PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]" "$@"
slurm_launch "$1" "$2" test.py "$3" "$4" --launcher=slurm "${@:5}"
