# Sourced by tools/dist_{train,test}.sh and tools/slurm_{train,test}.sh: tools/ on PYTHONPATH, and
# the two launchers. PYTHON: python.
TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}"

usage_unless() {  # N USAGE ARGS...: exit 2 with the usage line unless there are N or more ARGS
  if [ $(($# - 2)) -lt "$1" ]; then
    echo "usage: $0 $2" >&2
    exit 2
  fi
}

positive_ints() {  # NAME=value ...: exit 2 naming the first value that is not a positive integer
  local pair
  for pair in "$@"; do
    case "${pair#*=}" in ''|*[!0-9]*|0)
      echo "$0: ${pair%%=*} must be a positive integer, got '${pair#*=}'" >&2; exit 2;; esac
  done
}

# `dist_launch SCRIPT GPUS ARGS...` runs tools/SCRIPT ARGS in GPUS processes with torchrun (on a
# machine without GPUs: CPU processes, gloo backend). Multi-node: set NNODES, NODE_RANK,
# MASTER_ADDR and PORT on every node.
dist_launch() {
  local script=$1 gpus=$2
  shift 2
  positive_ints "GPUS=$gpus"
  exec "${PYTHON:-python}" -m torch.distributed.run \
      --nnodes="${NNODES:-1}" \
      --node_rank="${NODE_RANK:-0}" \
      --master_addr="${MASTER_ADDR:-127.0.0.1}" \
      --nproc_per_node="$gpus" \
      --master_port="${PORT:-29500}" \
      "$TOOLS/$script" "$@"
}

# `slurm_launch PARTITION JOB_NAME SCRIPT ARGS...`: one srun task per GPU running tools/SCRIPT
# ARGS; mmengine reads SLURM_PROCID/SLURM_NTASKS/SLURM_NODELIST (launcher=slurm). Reads GPUS
# (total, default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS (split into separate srun
# arguments), SRUN (srun).
slurm_launch() {
  local partition=$1 job=$2 script=$3 gpus=${GPUS:-8} per_node=${GPUS_PER_NODE:-8}
  local cpus=${CPUS_PER_TASK:-5}
  shift 3
  positive_ints "GPUS=$gpus" "GPUS_PER_NODE=$per_node" "CPUS_PER_TASK=$cpus"
  set -x
  # shellcheck disable=SC2086  # SRUN_ARGS is split on purpose
  ${SRUN:-srun} -p "$partition" \
      --job-name="$job" \
      --gres=gpu:"$per_node" \
      --ntasks="$gpus" \
      --ntasks-per-node="$per_node" \
      --cpus-per-task="$cpus" \
      --kill-on-bad-exit=1 \
      ${SRUN_ARGS:-} \
      "${PYTHON:-python}" -u "$TOOLS/$script" "$@"
}
