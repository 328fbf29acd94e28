# Sourced by tools/dist_train.sh and tools/dist_test.sh: `dist_launch SCRIPT GPUS ARGS...` runs
# tools/SCRIPT ARGS in GPUS processes with torchrun (on a machine without GPUs: CPU processes, gloo
# backend). Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node. PYTHON: python.
dist_launch() {
  local script=$1 gpus=$2 tools
  shift 2
  case "$gpus" in ''|*[!0-9]*|0)
    echo "$0: GPUS must be a positive integer, got '$gpus'" >&2; exit 2;; esac
  tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  PYTHONPATH="$tools/..${PYTHONPATH:+:$PYTHONPATH}" \
  exec "${PYTHON:-python}" -m torch.distributed.run \
      --nnodes="${NNODES:-1}" \
      --node_rank="${NODE_RANK:-0}" \
      --master_addr="${MASTER_ADDR:-127.0.0.1}" \
      --nproc_per_node="$gpus" \
      --master_port="${PORT:-29500}" \
      "$tools/$script" "$@"
}
