#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, without systemd: munged, slurmctld and slurmd, all state in DIR.
# It is how the tests run the study through this profile (tests/test_slurm.py), and a way to try the profile
# before a real cluster.
#
#   workflow/profiles/slurm/local.sh install      apt-get install slurm-wlm munge (as root; Debian 12: Slurm 22.05)
#   workflow/profiles/slurm/local.sh start DIR    write DIR/slurm.conf, start the daemons, wait for the node
#   export SLURM_CONF=DIR/slurm.conf              what sbatch, squeue, scancel (and Snakemake's plugin) read
#   workflow/profiles/slurm/local.sh stop DIR     stop the daemons (by the PIDs in DIR)
#
# The node is this machine as `slurmd -C` sees it (CPUs, memory); one partition "local", the default.
# No accounting database (accounting_storage/none), so `sacct` has nothing to say: the profile asks
# Snakemake's plugin to follow jobs with squeue, and MinJobAge=300 keeps finished jobs visible to squeue
# for 5 minutes. proctrack/linuxproc and task/none need no cgroups. The daemons run as root (start needs root).
# Inside each job, Snakemake's jobstep plugin runs the rule with srun in an environment stripped of SLURM_*
# variables, SLURM_CONF included, so srun reads the default /etc/slurm/slurm.conf: start links that to
# DIR/slurm.conf (and refuses when a real one is there), stop removes the link.
set -euo pipefail

die() { echo "local.sh: $*" >&2; exit 1; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }

write_conf() {  # DIR -> DIR/slurm.conf
  local dir=$1 node host
  node=$(slurmd -C | head -1)  # NodeName=<host> CPUs=... RealMemory=...
  host=$(hostname -s)
  cat >"$dir/slurm.conf" <<EOF
ClusterName=mtp-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
SchedulerType=sched/backfill
$node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

SYSTEM_CONF=/etc/slurm/slurm.conf

link_conf() {  # DIR -> /etc/slurm/slurm.conf points to DIR/slurm.conf
  if [ -e "$SYSTEM_CONF" ] && [ ! -L "$SYSTEM_CONF" ]; then
    die "$SYSTEM_CONF exists (a real Slurm configuration): this machine has its own Slurm; use it instead"
  fi
  mkdir -p "$(dirname "$SYSTEM_CONF")"
  ln -sfn "$1/slurm.conf" "$SYSTEM_CONF"
}

start() {
  local dir=$1
  [ "$(id -u)" = 0 ] || die "start needs root (slurmd runs jobs as their users)"
  command -v slurmctld >/dev/null && command -v munged >/dev/null ||
    die "slurm-wlm or munge is not installed: $0 install"
  mkdir -p "$dir/state" "$dir/spool"
  dir=$(cd "$dir" && pwd)
  chmod 700 "$dir"
  [ -f "$dir/munge.key" ] || { head -c 1024 /dev/urandom >"$dir/munge.key"; chmod 400 "$dir/munge.key"; }
  write_conf "$dir"
  link_conf "$dir"
  munged --force --key-file "$dir/munge.key" --socket "$dir/munge.socket" --pid-file "$dir/munged.pid" \
    --log-file "$dir/munged.log" --seed-file "$dir/munged.seed"
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -i
  slurmd
  for _ in $(seq 60); do  # the node answers within a second or two
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
      echo "local.sh: one-node Slurm up ($(sinfo -h -o '%c CPUs, %m MB')); export SLURM_CONF=$dir/slurm.conf"
      return 0
    fi
    sleep 0.5
  done
  stop "$dir"
  die "the node did not become idle in 30 s; see $dir/slurmctld.log and $dir/slurmd.log"
}

stop() {
  local dir=$1 pid name
  for name in slurmd slurmctld munged; do
    pid=$(cat "$dir/$name.pid" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/$name.pid"
  done
  if [ "$(readlink "$SYSTEM_CONF" 2>/dev/null)" = "$(cd "$dir" && pwd)/slurm.conf" ]; then rm -f "$SYSTEM_CONF"; fi
}

case "${1:-}" in
  install) # nothing to do (and apt-get left alone) when the daemons are already installed
           command -v slurmd >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null ||
             apt-get install -y -q slurm-wlm munge >/dev/null ||
             { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; } ;;
  start) [ -n "${2:-}" ] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [ -n "${2:-}" ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
