#!/usr/bin/env bash
# Bring up a REAL single-node SLURM cluster (slurmctld + slurmd + munged) on
# this machine, for hpcframe's test suite.  No systemd needed: the daemons are
# started directly.  Idempotent: running it again while the cluster is up is a
# no-op that re-prints the environment line.
#
# Usage:  tests/slurm/start_slurm.sh [STATE_DIR]
#   STATE_DIR defaults to $HPCFRAME_SLURM_DIR, then /tmp/hpcframe-slurm.
#
# Environment knobs (all optional):
#   HPCFRAME_SLURM_DIR          state dir (same as $1)
#   HPCFRAME_SLURM_TIMEOUT      seconds to wait for the node to become idle [60]
#   HPCFRAME_SLURM_CPUS         advertise this many CPUs instead of the real
#                               count (lets tests run more ranks than cores;
#                               uses SlurmdParameters=config_overrides)
#   HPCFRAME_SLURM_MPI_DEFAULT  MpiDefault in slurm.conf [none]; 'pmi2' makes
#                               a bare 'srun' wire up MPI (else pass --mpi=pmi2)
#   HPCFRAME_SLURM_ACCOUNTING=1 also install mariadb-server + slurmdbd and run a
#                               private MariaDB + slurmdbd so 'sacct' works.
#                               Off by default: sacct then says "Slurm
#                               accounting storage is disabled".
#   HPCFRAME_SLURM_CTLD_PORT    slurmctld port [6817]
#   HPCFRAME_SLURM_SLURMD_PORT  slurmd port [6818]
#   HPCFRAME_SLURM_DBD_PORT     slurmdbd port [6819]    (accounting only)
#   HPCFRAME_SLURM_DB_PORT      MariaDB port on 127.0.0.1 [16033] (accounting only)
#   HPCFRAME_SLURM_NO_INSTALL=1 never run apt-get (fail if packages are missing)
#
# Must run as root.  On success prints, as its LAST line of stdout:
#   export SLURM_CONF=<STATE_DIR>/etc/slurm.conf
# and writes the same line to <STATE_DIR>/env.sh (tests may `source` it).
# All progress/diagnostics go to stderr.
set -euo pipefail

STATE_DIR="${1:-${HPCFRAME_SLURM_DIR:-/tmp/hpcframe-slurm}}"
TIMEOUT="${HPCFRAME_SLURM_TIMEOUT:-60}"
CTLD_PORT="${HPCFRAME_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${HPCFRAME_SLURM_SLURMD_PORT:-6818}"
DBD_PORT="${HPCFRAME_SLURM_DBD_PORT:-6819}"
DB_PORT="${HPCFRAME_SLURM_DB_PORT:-16033}"
ACCOUNTING="${HPCFRAME_SLURM_ACCOUNTING:-0}"

log() { echo "[start_slurm] $*" >&2; }
die() { echo "[start_slurm] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd needs root; SlurmUser=root)"

mkdir -p "$STATE_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd -P)"
ETC="$STATE_DIR/etc"
CONF="$ETC/slurm.conf"
DBD_CONF="$ETC/slurmdbd.conf"
LOGDIR="$STATE_DIR/log"
RUNDIR="$STATE_DIR/run"
CTLD_PID="$RUNDIR/slurmctld.pid"
SLURMD_PID="$RUNDIR/slurmd.pid"
DBD_PID="$RUNDIR/slurmdbd.pid"
MARIADB_PID="$RUNDIR/mariadbd.pid"
MARIADB_SOCK="$RUNDIR/mariadbd.sock"
MUNGE_MARK="$RUNDIR/munged.started-by-us"
ENV_FILE="$STATE_DIR/env.sh"
export SLURM_CONF="$CONF"

pid_alive() {  # pid_alive PIDFILE -> 0 if the pid in PIDFILE is running
    local f="$1" p
    [ -s "$f" ] || return 1
    p="$(cat "$f" 2>/dev/null)" || return 1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null
}

stop_pidfile() {  # stop_pidfile PIDFILE: TERM, wait up to 10 s, then KILL
    local f="$1" p
    if pid_alive "$f"; then
        p="$(cat "$f")"
        kill "$p" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$p" 2>/dev/null; then kill -9 "$p" 2>/dev/null || true; fi
    fi
    rm -f "$f"
}

dump_logs() {
    local f
    for f in "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" "$LOGDIR/slurmdbd.log" \
             "$LOGDIR/mariadbd.log" /var/log/munge/munged.log; do
        if [ -f "$f" ]; then
            echo "----- tail -n 30 $f -----" >&2
            tail -n 30 "$f" >&2 || true
        fi
    done
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

# --------------------------------------------------------------------------
# 1. packages
# --------------------------------------------------------------------------
pkgs=(slurm-wlm munge)
bins=(slurmctld slurmd sbatch srun sinfo scontrol munged munge)
if [ "$ACCOUNTING" = 1 ]; then
    pkgs+=(slurmdbd mariadb-server)
    bins+=(slurmdbd mariadbd mariadb-install-db mariadb-admin)
fi
missing=()
for b in "${bins[@]}"; do have "$b" || missing+=("$b"); done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "${HPCFRAME_SLURM_NO_INSTALL:-0}" = 1 ] &&
        die "missing ${missing[*]} and HPCFRAME_SLURM_NO_INSTALL=1"
    log "installing ${pkgs[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d keeps the maintainer scripts from trying to start services
    # (there is no systemd / init); removed again right after.
    added_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    set +e
    apt-get update -qq >"$STATE_DIR/apt.log" 2>&1 &&
        apt-get install -y -q -o Dpkg::Options::=--force-confdef \
            -o Dpkg::Options::=--force-confold "${pkgs[@]}" >>"$STATE_DIR/apt.log" 2>&1
    rc=$?
    set -e
    [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    if [ "$rc" -ne 0 ]; then
        tail -n 30 "$STATE_DIR/apt.log" >&2
        die "apt-get install ${pkgs[*]} failed (log: $STATE_DIR/apt.log)"
    fi
fi
PATH="$PATH:/usr/sbin:/sbin"

# --------------------------------------------------------------------------
# 2. already up?  (idempotency)
# --------------------------------------------------------------------------
HOST="$(hostname -s)"
[ -n "$HOST" ] || die "hostname -s is empty"

conf_mode_matches() {  # existing slurm.conf was written for the same accounting mode
    if [ "$ACCOUNTING" = 1 ]; then
        grep -q '^AccountingStorageType=accounting_storage/slurmdbd' "$CONF" && pid_alive "$DBD_PID"
    else
        grep -q '^AccountingStorageType=accounting_storage/none' "$CONF"
    fi
}
if [ -f "$CONF" ] && pid_alive "$CTLD_PID" && pid_alive "$SLURMD_PID" && conf_mode_matches &&
   timeout 10 sinfo -h -n "$HOST" -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated|completing)'; then
    log "already running (state dir $STATE_DIR)"
    echo "export SLURM_CONF=$CONF" > "$ENV_FILE"
    echo "export SLURM_CONF=$CONF"
    exit 0
fi

# Half-up (a daemon died, stale pid files, mode changed): stop our slurm
# daemons and start them again (MariaDB and munged are reused if alive).
if pid_alive "$CTLD_PID" || pid_alive "$SLURMD_PID" || pid_alive "$DBD_PID"; then
    log "partially running or reconfigured; restarting our slurm daemons"
fi
stop_pidfile "$SLURMD_PID"
stop_pidfile "$CTLD_PID"
stop_pidfile "$DBD_PID"

# Another slurm (e.g. a second state dir) already on our ports would answer
# our health checks and hide the failure: refuse clearly instead.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports=("$CTLD_PORT" "$SLURMD_PORT")
[ "$ACCOUNTING" = 1 ] && ports+=("$DBD_PORT")
for port in "${ports[@]}"; do
    if port_busy "$port"; then
        die "127.0.0.1:$port is already in use (another slurm cluster/state dir running?" \
            "stop it, or set HPCFRAME_SLURM_CTLD_PORT/_SLURMD_PORT/_DBD_PORT)"
    fi
done

# --------------------------------------------------------------------------
# 3. munge
# --------------------------------------------------------------------------
MUNGE_KEY=/etc/munge/munge.key
if [ ! -s "$MUNGE_KEY" ]; then
    log "creating munge key $MUNGE_KEY"
    mkdir -p /etc/munge
    if have mungekey; then
        mungekey --create --keyfile="$MUNGE_KEY" --force
    else
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
fi
if id munge >/dev/null 2>&1; then
    chown munge:munge /etc/munge "$MUNGE_KEY"
fi
chmod 700 /etc/munge
chmod 400 "$MUNGE_KEY"

mkdir -p "$ETC" "$LOGDIR" "$RUNDIR" "$STATE_DIR/ctld-state" "$STATE_DIR/spool"
chmod 755 "$STATE_DIR" "$RUNDIR" "$STATE_DIR/spool"

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if munge_ok; then
    log "munged already running"
else
    log "starting munged"
    for d in /run/munge /var/log/munge /var/lib/munge; do
        mkdir -p "$d"
        if id munge >/dev/null 2>&1; then chown munge:munge "$d"; fi
    done
    chmod 755 /run/munge
    chmod 700 /var/log/munge /var/lib/munge
    # a stale socket/pid from a dead munged blocks startup
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock /run/munge/munged.pid
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1 ||
            { dump_logs; die "munged failed to start"; }
    else
        /usr/sbin/munged --force </dev/null >/dev/null 2>&1 ||
            { dump_logs; die "munged failed to start"; }
    fi
    for _ in $(seq 1 50); do munge_ok && break; sleep 0.2; done
    munge_ok || { dump_logs; die "munged started but 'munge -n | unmunge' fails"; }
    cp /run/munge/munged.pid "$MUNGE_MARK" 2>/dev/null || : > "$MUNGE_MARK"
fi

# --------------------------------------------------------------------------
# 4. configuration
# --------------------------------------------------------------------------
# Real hardware as slurmd itself sees it, e.g.
# NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24103
HW="$(slurmd -C 2>/dev/null | head -n 1 || true)"
getf() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$HW"; }
CPUS="$(getf CPUs)"; SOCKETS="$(getf SocketsPerBoard)"; CORES="$(getf CoresPerSocket)"
THREADS="$(getf ThreadsPerCore)"; MEM="$(getf RealMemory)"
[ -n "$CPUS" ] || CPUS="$(nproc)"
[ -n "$MEM" ] || MEM="$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)"
# leave a little slack so a few MB of difference never drains the node
MEM=$(( MEM > 256 ? MEM - 64 : MEM ))
if [ -n "$SOCKETS" ] && [ -n "$CORES" ] && [ -n "$THREADS" ]; then
    NODE_HW="CPUs=$CPUS Sockets=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS"
else
    NODE_HW="CPUs=$CPUS"
fi
SLURMD_PARAMS="# SlurmdParameters: default"
if [ -n "${HPCFRAME_SLURM_CPUS:-}" ]; then
    NODE_HW="CPUs=$HPCFRAME_SLURM_CPUS"
    SLURMD_PARAMS="SlurmdParameters=config_overrides"
fi

if [ "$ACCOUNTING" = 1 ]; then
    ACCT_CONF="# accounting through slurmdbd -> private MariaDB: sacct works
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT"
else
    ACCT_CONF="# no slurmdbd: sacct is unavailable (use scontrol show job / jobcomp.log)
AccountingStorageType=accounting_storage/none"
fi

cat > "$CONF.new" <<EOF
# Generated by hpcframe tests/slurm/start_slurm.sh -- single-node test cluster.
ClusterName=hpcframe
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CryptoType=crypto/munge
MailProg=/bin/true

StateSaveLocation=$STATE_DIR/ctld-state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# no cgroups: works in containers/VMs without a delegated cgroup tree
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=${HPCFRAME_SLURM_MPI_DEFAULT:-none}
SwitchType=switch/none
$SLURMD_PARAMS

SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU

# finished jobs stay visible to 'scontrol show job' / squeue for 10 minutes
MinJobAge=600
MaxJobCount=20000
MaxArraySize=1001
# a job whose dependency can never be satisfied is cancelled, not left pending
DependencyParameters=kill_invalid_depend

$ACCT_CONF
# one line per finished job (JobState=COMPLETED/FAILED/CANCELLED/TIMEOUT ...)
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGDIR/jobcomp.log

ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=5
Waittime=0
TCPTimeout=5
BatchStartTimeout=20

NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST $NODE_HW RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
mv "$CONF.new" "$CONF"

cat > "$ETC/cgroup.conf" <<'EOF'
# Not used (no cgroup plugins configured); present so nothing complains.
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
EOF

# --------------------------------------------------------------------------
# 5. accounting (optional): private MariaDB + slurmdbd
# --------------------------------------------------------------------------
if [ "$ACCOUNTING" = 1 ]; then
    DBDIR="$STATE_DIR/mariadb"
    mping() { mariadb-admin --no-defaults --socket="$MARIADB_SOCK" -u root ping >/dev/null 2>&1; }
    if ! pid_alive "$MARIADB_PID" || ! mping; then
        stop_pidfile "$MARIADB_PID"
        rm -f "$MARIADB_SOCK"
        mkdir -p "$DBDIR"
        chown mysql:mysql "$DBDIR" "$RUNDIR"
        if [ ! -d "$DBDIR/mysql" ]; then
            log "initialising private MariaDB in $DBDIR"
            mariadb-install-db --no-defaults --user=mysql --datadir="$DBDIR" \
                --auth-root-authentication-method=socket --skip-test-db \
                >"$LOGDIR/mariadb-install.log" 2>&1 ||
                { tail -n 30 "$LOGDIR/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
        fi
        log "starting mariadbd (127.0.0.1:$DB_PORT)"
        setsid mariadbd --no-defaults --user=mysql --datadir="$DBDIR" \
            --socket="$MARIADB_SOCK" --port="$DB_PORT" --bind-address=127.0.0.1 \
            --skip-name-resolve --pid-file="$MARIADB_PID" \
            --log-error="$LOGDIR/mariadbd.log" \
            --innodb-buffer-pool-size=1024M --innodb-lock-wait-timeout=900 \
            </dev/null >/dev/null 2>&1 &
        for _ in $(seq 1 60); do mping && break; sleep 0.5; done
        mping || { dump_logs; die "mariadbd did not come up"; }
    fi
    mariadb --no-defaults --socket="$MARIADB_SOCK" -u root -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
        GRANT ALL ON hpcframe_acct_db.* TO 'slurm'@'127.0.0.1';
        GRANT ALL ON hpcframe_acct_db.* TO 'slurm'@'localhost';" ||
        die "could not create the MariaDB user for slurmdbd"

    # slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF; it
    # refuses a file readable by others.
    ( umask 077
      cat > "$DBD_CONF" <<EOF
# Generated by hpcframe tests/slurm/start_slurm.sh
AuthType=auth/munge
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DBD_PID
LogFile=$LOGDIR/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=hpcframe_acct_db
EOF
    )
    chmod 600 "$DBD_CONF"

    log "starting slurmdbd (127.0.0.1:$DBD_PORT)"
    setsid slurmdbd </dev/null >>"$LOGDIR/slurmdbd.stdout" 2>&1 ||
        { dump_logs; die "slurmdbd failed to start"; }
    dbd_ok() { timeout 5 sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }
    for _ in $(seq 1 60); do dbd_ok && break; sleep 0.5; done
    dbd_ok || { dump_logs; die "slurmdbd does not answer 'sacctmgr show cluster'"; }
    if ! timeout 10 sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx hpcframe; then
        timeout 30 sacctmgr -i add cluster hpcframe >/dev/null ||
            { dump_logs; die "sacctmgr add cluster hpcframe failed"; }
    fi
fi

# --------------------------------------------------------------------------
# 6. slurmctld + slurmd
# --------------------------------------------------------------------------
log "starting slurmctld (conf $CONF)"
setsid slurmctld -f "$CONF" </dev/null >>"$LOGDIR/slurmctld.stdout" 2>&1 ||
    { dump_logs; die "slurmctld failed to start"; }
ctld_ok() { pid_alive "$CTLD_PID" && timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }
for _ in $(seq 1 75); do ctld_ok && break; sleep 0.2; done
ctld_ok || { dump_logs; die "slurmctld does not answer 'scontrol ping'"; }

log "starting slurmd (node $HOST)"
setsid slurmd -f "$CONF" -N "$HOST" </dev/null >>"$LOGDIR/slurmd.stdout" 2>&1 ||
    { dump_logs; die "slurmd failed to start"; }

start=$(date +%s)
resumed=0
state=""
while :; do
    state="$(timeout 5 sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -n 1 || true)"
    case "$state" in
        idle|mixed|allocated|completing) break ;;
        *drain*|down*|*fail*)
            # e.g. left over in the saved state of a previous run
            if [ "$resumed" = 0 ] && pid_alive "$SLURMD_PID"; then
                scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
                resumed=1
            fi ;;
    esac
    elapsed=$(( $(date +%s) - start ))
    if [ "$elapsed" -ge "$TIMEOUT" ]; then
        echo "[start_slurm] ERROR: node $HOST not idle after ${TIMEOUT}s (state: '${state:-?}')" >&2
        timeout 5 scontrol show node "$HOST" >&2 2>&1 || true
        dump_logs
        exit 1
    fi
    if [ "$elapsed" -ge 5 ] && ! pid_alive "$SLURMD_PID"; then
        dump_logs; die "slurmd exited during startup"
    fi
    pid_alive "$CTLD_PID" || { dump_logs; die "slurmctld exited during startup"; }
    sleep 0.5
done

echo "export SLURM_CONF=$CONF" > "$ENV_FILE"
log "cluster up: node $HOST is $state (logs in $LOGDIR)"
echo "export SLURM_CONF=$CONF"
