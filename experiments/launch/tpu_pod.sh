#!/usr/bin/env bash
# Train a jaxgen config on a Cloud TPU VM pod slice (e.g. v4-32: 4 workers x 4 chips).
#
# Every worker runs the same `jaxgen train` command; `--distributed auto` lets JAX read the
# coordinator address, the process count and this worker's id from the TPU VM metadata, so nothing
# differs between workers. The global mesh spans all chips of all workers; each worker feeds its
# slice of the global batch; worker 0 prints, logs and writes samples.
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b WORKDIR=/mnt/shared/runs/vae \
#       experiments/launch/tpu_pod.sh vae_digits --config.train.batch_size=512
#
#   SETUP=1 ... tpu_pod.sh ...   first installs jax[tpu] and this checkout (copied to $REPO_DIR) on
#                                every worker
#
# WORKDIR must be one folder that every worker sees at the same path (Filestore/NFS, or a GCS bucket
# mounted with gcsfuse): checkpoints are written by all workers together, and a resumed run reads
# them back. Preemption: a preempted worker gets SIGTERM; all workers save at the same step and exit
# 0 ("preempted at step N"). Run the same command again (on a slice of any size whose chip count
# divides the global batch) and it resumes from the newest complete checkpoint.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to its zone}"
: "${WORKDIR:?set WORKDIR to a folder every worker sees at the same path}"
if [[ $# -lt 1 ]]; then
  echo "usage: TPU_NAME=... ZONE=... WORKDIR=... $0 CONFIG [--config.x=y ...]" >&2
  exit 2
fi
REPO_DIR=${REPO_DIR:-jaxgen}   # relative to each worker's home directory
config=$1
shift
args=$(printf ' %q' "$@")
ssh_all() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$1"
}
if [[ "${SETUP:-0}" == 1 ]]; then
  here=$(cd "$(dirname "$0")/../.." && pwd)
  gcloud compute tpus tpu-vm scp --recurse "$here" "$TPU_NAME:$REPO_DIR" --zone "$ZONE" --worker=all
  ssh_all "pip install -U 'jax[tpu]' && pip install -e $REPO_DIR"
fi
ssh_all "cd $REPO_DIR && jaxgen train $config --workdir $WORKDIR --distributed auto --quiet$args"
