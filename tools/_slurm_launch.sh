# Sourced by tools/slurm_train.sh and tools/slurm_test.sh: one srun task per GPU running
# tools/$1 with the remaining arguments; mmengine reads SLURM_PROCID/SLURM_NTASKS/SLURM_NODELIST
# (launcher=slurm). Reads GPUS (total, default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (5),
# SRUN_ARGS (split into separate srun arguments), SRUN (srun) and PYTHON (python).
slurm_launch() {
  local script=$1
  shift
  local gpus=${GPUS:-8} per_node=${GPUS_PER_NODE:-8} cpus=${CPUS_PER_TASK:-5}
  local tools
  tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  local pair
  for pair in "GPUS=$gpus" "GPUS_PER_NODE=$per_node" "CPUS_PER_TASK=$cpus"; do
    case "${pair#*=}" in ''|*[!0-9]*|0)
      echo "$0: ${pair%%=*} must be a positive integer, got '${pair#*=}'" >&2; exit 2;; esac
  done
  set -x
  # shellcheck disable=SC2086  # SRUN_ARGS is split on purpose
  PYTHONPATH="$tools/..${PYTHONPATH:+:$PYTHONPATH}" \
  ${SRUN:-srun} -p "$PARTITION" \
      --job-name="$JOB_NAME" \
      --gres=gpu:"$per_node" \
      --ntasks="$gpus" \
      --ntasks-per-node="$per_node" \
      --cpus-per-task="$cpus" \
      --kill-on-bad-exit=1 \
      ${SRUN_ARGS:-} \
      "${PYTHON:-python}" -u "$tools/$script" "$@"
}
