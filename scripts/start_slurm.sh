#!/usr/bin/env bash
# Start a single-node Slurm (munge + slurmctld + slurmd from Debian's packages) for the integration
# tests: one partition `debug` on this host with all its CPUs. Needs root and apt; idempotent.
# Exits 0 without Slurm (printing why) so that CI goes on: tests/integration/test_slurm.py then skips.
set -uo pipefail

say() { echo "[start_slurm] $*"; }

if sinfo >/dev/null 2>&1; then
  say "Slurm already answers: $(sinfo --noheader --format='%P %a %D %T' | head -1)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  say "not root: cannot install or start Slurm (the Slurm tests will skip)"
  exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurmctld slurmd slurm-client munge with apt"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get install -y -q slurmctld slurmd slurm-client munge >/tmp/start_slurm_apt.log 2>&1 \
         || { apt-get update -q >>/tmp/start_slurm_apt.log 2>&1 \
              && apt-get install -y -q slurmctld slurmd slurm-client munge >>/tmp/start_slurm_apt.log 2>&1; }; }; then
    say "apt-get failed (see /tmp/start_slurm_apt.log): the Slurm tests will skip"
    exit 0
  fi
fi

host=$(hostname -s)
cpus=$(nproc)
memory_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
state=/var/spool/slurmctld
spool=/var/spool/slurmd
mkdir -p /etc/slurm "$state" "$spool" /var/log/slurm /run/munge /var/lib/munge /var/log/munge /etc/munge

if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- munged --force || munged --force || { say "munged did not start"; exit 0; }
fi

# Containers have neither systemd nor a writable cgroup tree: track processes through /proc,
# no task plugin, no accounting. Requeue on by default, as on a real cluster.
cat >/etc/slurm/slurm.conf <<EOF
ClusterName=medlib-ci
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=${state}
SlurmdSpoolDir=${spool}
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MinJobAge=600
InactiveLimit=0
MpiDefault=none
KillWait=5
NodeName=${host} CPUs=${cpus} RealMemory=${memory_mb} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
# slurmd loads a cgroup plugin even when nothing uses it; autodetect picks the mounted version.
echo "CgroupPlugin=autodetect" >/etc/slurm/cgroup.conf

pgrep -x slurmctld >/dev/null || slurmctld || { say "slurmctld did not start (see /var/log/slurm/slurmctld.log)"; exit 0; }
pgrep -x slurmd >/dev/null || slurmd || { say "slurmd did not start (see /var/log/slurm/slurmd.log)"; exit 0; }

for _ in $(seq 1 30); do
  if sinfo --noheader --format='%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
    say "Slurm is up: $(sinfo --noheader --format='%P %D %T %c CPUs')"
    exit 0
  fi
  sleep 1
done
scontrol update NodeName="${host}" State=RESUME >/dev/null 2>&1 || true
say "Slurm did not become ready in 30 s: $(sinfo 2>&1 | tail -2) (the Slurm tests will skip)"
exit 0
