#!/usr/bin/env bash
# Stop the single-node test cluster started by start_slurm.sh.
# Stops slurmd, slurmctld (and slurmdbd + the private MariaDB, if accounting
# was on) by their pid files in the state dir, and munged only if
# start_slurm.sh started it.  Idempotent: nothing running -> exit 0.
#
# Usage:  tests/slurm/stop_slurm.sh [STATE_DIR]
#   STATE_DIR defaults to $HPCFRAME_SLURM_DIR, then /tmp/hpcframe-slurm.
#   HPCFRAME_SLURM_PURGE=1 also deletes the state dir afterwards.
set -euo pipefail

STATE_DIR="${1:-${HPCFRAME_SLURM_DIR:-/tmp/hpcframe-slurm}}"
RUNDIR="$STATE_DIR/run"
log() { echo "[stop_slurm] $*" >&2; }

stop_pidfile() {  # stop_pidfile NAME PIDFILE
    local name="$1" f="$2" p
    if [ ! -s "$f" ]; then log "$name: no pid file"; rm -f "$f"; return 0; fi
    p="$(cat "$f" 2>/dev/null || true)"
    if [ -z "$p" ] || ! kill -0 "$p" 2>/dev/null; then
        log "$name: not running (stale pid file)"; rm -f "$f"; return 0
    fi
    # make sure the pid really is that daemon before signalling it
    if ! grep -q "$name" "/proc/$p/comm" 2>/dev/null; then
        log "$name: pid $p is not $name; leaving it alone"; rm -f "$f"; return 0
    fi
    log "$name: stopping pid $p"
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
        log "$name: still alive after 15s, SIGKILL"
        kill -KILL "$p" 2>/dev/null || true
    fi
    rm -f "$f"
}

if [ -d "$RUNDIR" ]; then
    stop_pidfile slurmd "$RUNDIR/slurmd.pid"
    stop_pidfile slurmctld "$RUNDIR/slurmctld.pid"
    # accounting mode (HPCFRAME_SLURM_ACCOUNTING=1) only
    stop_pidfile slurmdbd "$RUNDIR/slurmdbd.pid"
    stop_pidfile mariadbd "$RUNDIR/mariadbd.pid"
    if [ -f "$RUNDIR/munged.started-by-us" ]; then
        # munged's own pid file is authoritative; our copy is a fallback
        if [ -s /run/munge/munged.pid ]; then
            stop_pidfile munged /run/munge/munged.pid
        else
            stop_pidfile munged "$RUNDIR/munged.started-by-us"
        fi
        rm -f "$RUNDIR/munged.started-by-us"
    fi
else
    log "no state dir $STATE_DIR; nothing to stop"
fi

if [ "${HPCFRAME_SLURM_PURGE:-0}" = 1 ] && [ -d "$STATE_DIR" ]; then
    log "removing $STATE_DIR"
    rm -rf "$STATE_DIR"
fi
log "stopped"
