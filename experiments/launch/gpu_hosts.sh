#!/usr/bin/env bash
# Train a jaxgen config on several GPU hosts, one process per host (each process drives all GPUs of
# its host), joined through jax.distributed with an explicit coordinator.
#
#   HOSTS="gpu-a gpu-b gpu-c gpu-d" WORKDIR=/shared/runs/vae \
#       experiments/launch/gpu_hosts.sh vae_digits --config.train.batch_size=512
#
# The first host is the coordinator (COORDINATOR=host:port overrides it; PORT defaults to 12355 and
# must be reachable from every host). Each host gets JAXGEN_COORDINATOR, JAXGEN_NUM_PROCESSES and
# its own JAXGEN_PROCESS_ID, i.e. exactly what these flags would say:
#
#   jaxgen train CONFIG --workdir W --coordinator gpu-a:12355 --num_processes 4 --process_id I
#
# REPO_DIR (default: this checkout's path) must hold the same jaxgen checkout on every host, with
# jax[cuda] installed; WORKDIR must be one folder every host sees at the same path (NFS, Lustre...).
#
# Stopping: Ctrl-C or SIGTERM to this script sends SIGTERM to the jaxgen process on the first host;
# one process's signal is enough, since the processes agree on stopping inside the train step: all
# of them save at the same step, print "preempted at step N" (process 0) and exit 0. Run the same
# command again to resume. Under SLURM, use `srun jaxgen train CONFIG --workdir W --distributed auto`
# instead (see README.md).
set -euo pipefail
: "${HOSTS:?set HOSTS to the space-separated host names, coordinator first}"
: "${WORKDIR:?set WORKDIR to a folder every host sees at the same path}"
if [[ $# -lt 1 ]]; then
  echo "usage: HOSTS=\"h0 h1 ...\" WORKDIR=... $0 CONFIG [--config.x=y ...]" >&2
  exit 2
fi
read -r -a hosts <<< "$HOSTS"
n=${#hosts[@]}
coordinator=${COORDINATOR:-${hosts[0]}:${PORT:-12355}}
REPO_DIR=${REPO_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
pidfile=/tmp/jaxgen_train_${USER:-user}.pid   # on each host: the pid of its jaxgen process
config=$1
shift
args=$(printf ' %q' "$@")
pids=()
for i in "${!hosts[@]}"; do
  # `exec` keeps the pid written to $pidfile; no tty, so a dropped connection does not kill the run.
  ssh "${hosts[$i]}" "cd $REPO_DIR && echo \$\$ > $pidfile && exec env JAXGEN_COORDINATOR=$coordinator \
JAXGEN_NUM_PROCESSES=$n JAXGEN_PROCESS_ID=$i jaxgen train $config --workdir $WORKDIR --quiet$args" \
    > >(sed "s/^/[$i] /") 2>&1 &
  pids+=($!)
done
trap 'ssh "${hosts[0]}" "kill -TERM \$(cat $pidfile)"' INT TERM
status=0
for pid in "${pids[@]}"; do
  code=0
  wait "$pid" || code=$?
  while kill -0 "$pid" 2>/dev/null; do  # `wait` returns early when the trap runs: wait again
    code=0
    wait "$pid" || code=$?
  done
  if [[ $code -ne 0 ]]; then status=$code; fi
done
exit $status
