#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for testing `dcr-dask run --cluster slurm`.
#
# Installs Debian's slurm-wlm and munge (apt-get, non-interactive), writes a
# minimal slurm.conf whose only node is this machine (its real CPU count and
# memory, as `slurmd -C` reads them, reached at 127.0.0.1), creates the munge
# key, starts munged, slurmctld and slurmd, and waits until `sinfo` shows the
# node idle. Running it again is quick: what is installed, written or running
# already is left as it is.
#
# Run as root on a Debian/Ubuntu test machine (CI, a VM, a container); jobs run
# as the user who submits them, root included. Not for a production cluster.
#
#   sudo deploy/slurm/local-slurm.sh          # then: sinfo, tests/test_slurm.py
#
# Environment: SLURM_WAIT_SECONDS (default 120) bounds the wait for the node.
set -euo pipefail

WAIT_SECONDS="${SLURM_WAIT_SECONDS:-120}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
NODE=localhost
PARTITION=debug
LOG_DIR=/var/log/slurm

fail() {
    echo "local-slurm: FAILED: $*" >&2
    for log in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
        if [[ -s "$log" ]]; then
            echo "---- last lines of $log" >&2
            tail -n 15 "$log" >&2 || true
        fi
    done
    exit 1
}

say() { echo "local-slurm: $*"; }

[[ "$(id -u)" -eq 0 ]] || fail "must run as root (it installs packages and starts daemons)"

# 1. packages ---------------------------------------------------------------
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v sinfo >/dev/null && command -v munged >/dev/null; then
    say "slurm-wlm and munge already installed"
else
    command -v apt-get >/dev/null || fail "apt-get not found: install slurm-wlm and munge by hand"
    say "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || fail "apt-get update failed (no package repository reachable?)"
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null ||
        fail "apt-get install slurm-wlm munge failed"
fi

# 2. munge ------------------------------------------------------------------
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
chown munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating the munge key"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
else
    say "starting munged"
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start"
    for _ in $(seq 1 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.2
    done
    munge -n </dev/null | unmunge >/dev/null 2>&1 || fail "munge credentials do not round-trip"
fi

# 3. slurm.conf -------------------------------------------------------------
# `slurmd -C` prints this machine's hardware as a NodeName line; keep its CPU
# layout and memory, and call the node "localhost" at 127.0.0.1.
hardware="$(slurmd -C 2>/dev/null | head -n 1)" || true
[[ "$hardware" == NodeName=* ]] || fail "slurmd -C did not describe this machine: '$hardware'"
cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hardware")"
memory="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hardware")"
layout="$(grep -o 'Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' <<<"$hardware" || true)"
[[ -n "$cpus" && -n "$memory" ]] || fail "could not read CPUs and RealMemory from '$hardware'"
# Jobs may be pinned to fewer CPUs than the hardware has (containers): use the smaller count.
online="$(nproc)"
if ((online < cpus)); then
    cpus="$online"
    layout=""
fi

new_conf="$(mktemp)"
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
# Written by dcr_dask's deploy/slurm/local-slurm.sh: a one-node test cluster.
ClusterName=dcrdask-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=60
KillWait=10
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus ${layout} RealMemory=$memory State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd "$LOG_DIR"
restart=0
if [[ -f "$CONF" ]] && cmp -s "$new_conf" "$CONF"; then
    say "$CONF up to date ($cpus CPUs, $memory MB)"
else
    say "writing $CONF ($cpus CPUs, $memory MB)"
    cp "$new_conf" "$CONF"
    chmod 0644 "$CONF"
    restart=1
fi

# 4. daemons ----------------------------------------------------------------
# running PIDFILE NAME: the pid file names a live (not zombie) process called NAME.
running() {
    local pid
    [[ -f "$1" ]] || return 1
    pid="$(cat "$1")"
    [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/stat" ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]] || return 1
    ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat"
}

stop() {
    if running "$1" "$2"; then
        kill "$(cat "$1")" 2>/dev/null || true
        for _ in $(seq 1 50); do running "$1" "$2" || break; sleep 0.2; done
    fi
}

if ((restart)); then
    stop /run/slurmd.pid slurmd
    stop /run/slurmctld.pid slurmctld
fi
if running /run/slurmctld.pid slurmctld; then
    say "slurmctld already running"
else
    say "starting slurmctld"
    slurmctld || fail "slurmctld did not start"
fi
for _ in $(seq 1 50); do
    scontrol ping 2>/dev/null | grep -q 'is UP' && break
    sleep 0.2
done
scontrol ping 2>/dev/null | grep -q 'is UP' || fail "slurmctld does not answer 'scontrol ping'"
if running /run/slurmd.pid slurmd; then
    say "slurmd already running"
else
    say "starting slurmd"
    slurmd -N "$NODE" || fail "slurmd did not start"
fi

# 5. wait for the node ------------------------------------------------------
deadline=$((SECONDS + WAIT_SECONDS))
state=""
while ((SECONDS < deadline)); do
    state="$(sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n 1)"
    case "$state" in
    idle | mixed | allocated | completing) break ;;
    down* | drain* | fail*)
        scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        ;;
    esac
    sleep 1
done
case "$state" in
idle | mixed | allocated | completing) ;;
*) fail "node $NODE is '${state:-unknown}' after ${WAIT_SECONDS}s (sinfo -N -l; $LOG_DIR/)" ;;
esac
say "SLURM is up: partition $PARTITION, node $NODE ($cpus CPUs, $memory MB) is $state"
sinfo
