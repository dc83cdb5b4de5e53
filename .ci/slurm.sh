#!/usr/bin/env bash
# A private one-node SLURM cluster on this machine, for the tests in tests/system/test_slurm_jobs.py.
#
#   bash .ci/slurm.sh up      # install (Debian packages, srun's PMIx library included) and
#                             # start munged, slurmctld, slurmd
#   bash .ci/slurm.sh down    # stop exactly the daemons `up` started (by their recorded PIDs)
#   bash .ci/slurm.sh status  # is it up?
#
# `up` prints `export SLURM_CONF=...` as its only line on stdout (everything else goes to
# stderr), so `eval "$(bash .ci/slurm.sh up)"` sets up the calling shell; under GitHub Actions it
# also appends SLURM_CONF to $GITHUB_ENV. Sourcing the file (`. .ci/slurm.sh up`) exports it too.
#
# Everything lives in $MPI_PYMC_SLURM_DIR (default /tmp/mpi_pymc_slurm): its own munge key and
# socket, slurm.conf, state, spool and logs, and non-default ports, so it never touches a site's
# SLURM or munge. `up` is idempotent; `down` never signals a process it did not start.
# Needs root (the daemons run as root, SlurmUser=root); jobs may then be submitted by any user.
# As a non-root CI user: eval "$(sudo -E bash .ci/slurm.sh up)".

_slurm_dir="${MPI_PYMC_SLURM_DIR:-/tmp/mpi_pymc_slurm}"
_slurm_ctld_port="${MPI_PYMC_SLURMCTLD_PORT:-16817}"
_slurm_d_port="${MPI_PYMC_SLURMD_PORT:-16818}"
_slurm_timeout="${MPI_PYMC_SLURM_TIMEOUT:-60}"

_slurm_log() { echo "slurm.sh: $*" >&2; }

# True when process $1 is alive and is the daemon named $2 (PIDs get reused).
_slurm_alive() {
    [ -n "$1" ] && [ -r "/proc/$1/comm" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]
}

# True when the PID recorded in file $1 is alive and is the daemon named $2.
_slurm_pid_is() {
    _slurm_alive "$(cat "$1" 2>/dev/null)" "$2"
}

# The PMIx library srun's mpi/pmix plugin loads (MpiDefault=pmix; the job templates use
# `srun --mpi=pmix`). Debian's plugin (slurm-wlm-basic-plugins, mpi_pmix_v4.so) dlopens the
# unversioned libpmix.so, which only libpmix-dev ships: with the runtime package libpmix2 alone
# srun still stops with "can not load PMIx library" (checked on bookworm).
_slurm_pmix_lib() {
    local lib
    for lib in /usr/lib/*/pmix*/lib/libpmix.so /usr/lib/*/libpmix.so /usr/lib*/libpmix.so \
        /usr/local/lib/libpmix.so; do
        [ -e "$lib" ] && { echo "$lib"; return 0; }
    done
    return 1
}

_slurm_install() {
    local missing=""
    command -v munged >/dev/null || missing="$missing munge"
    command -v slurmctld >/dev/null || missing="$missing slurmctld"
    command -v slurmd >/dev/null || missing="$missing slurmd"
    command -v sinfo >/dev/null || missing="$missing slurm-client"
    _slurm_pmix_lib >/dev/null || missing="$missing libpmix-dev"
    [ -z "$missing" ] && return 0
    command -v apt-get >/dev/null || {
        _slurm_log "missing:$missing and no apt-get here: install SLURM, munge and PMIx yourself"
        return 1
    }
    _slurm_log "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # Debian's package scripts try to start the services; this cluster starts its own instead.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
    fi
    local packages="slurmctld slurmd slurm-client munge libpmix-dev"
    apt-get install -y -q --no-install-recommends $packages >&2 ||
        { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends $packages >&2; }
    local status=$?
    [ "$created_policy" = 1 ] && rm -f "$policy"
    return $status
}

_slurm_write_conf() {
    local host cpus mem_mb
    host="$(hostname -s)"
    cpus="$(nproc)"
    # A little under the physical memory: slurmd drains a node that reports less than configured.
    mem_mb="$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)"
    cat >"$_slurm_dir/slurm.conf" <<EOF
# Written by .ci/slurm.sh: a private one-node cluster for mpi_pymc's SLURM tests.
ClusterName=mpipymc
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$_slurm_ctld_port
SlurmdPort=$_slurm_d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$_slurm_dir/munge/munge.socket.2,cred_expire=10
StateSaveLocation=$_slurm_dir/state
SlurmdSpoolDir=$_slurm_dir/spool
SlurmctldPidFile=$_slurm_dir/run/slurmctld.pid
SlurmdPidFile=$_slurm_dir/run/slurmd.pid
SlurmctldLogFile=$_slurm_dir/log/slurmctld.log
SlurmdLogFile=$_slurm_dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$_slurm_dir/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((mem_mb / cpus))
MpiDefault=pmix
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
JobRequeue=1
ReturnToService=2
InactiveLimit=0
MailProg=/bin/true
KillWait=10
MinJobAge=300
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    : >"$_slurm_dir/plugstack.conf"
}

_slurm_start_munged() {
    local m="$_slurm_dir/munge"
    if _slurm_pid_is "$_slurm_dir/run/munged.pid" munged; then return 0; fi
    if [ ! -s "$m/munge.key" ]; then
        (umask 077 && head -c 1024 /dev/urandom >"$m/munge.key")
    fi
    chmod 0400 "$m/munge.key"
    rm -f "$m/munge.socket.2" "$m/munge.socket.2.lock"
    # munged forks and writes its PID file itself; root needs --force.
    munged --force --socket="$m/munge.socket.2" --key-file="$m/munge.key" \
        --pid-file="$_slurm_dir/run/munged.pid" --log-file="$_slurm_dir/log/munged.log" \
        --seed-file="$m/munged.seed" >&2 || return 1
    local i
    for i in $(seq 50); do
        [ -S "$m/munge.socket.2" ] && _slurm_pid_is "$_slurm_dir/run/munged.pid" munged && return 0
        sleep 0.1
    done
    return 1
}

# Starts daemon $1 in the foreground mode (-D) in the background and records its PID.
_slurm_start_daemon() {
    local name="$1"
    shift
    if _slurm_pid_is "$_slurm_dir/run/$name.started" "$name"; then return 0; fi
    SLURM_CONF="$_slurm_dir/slurm.conf" "$name" -D "$@" \
        >>"$_slurm_dir/log/$name.stdout" 2>&1 </dev/null &
    echo $! >"$_slurm_dir/run/$name.started"
}

# When process $1 started, in seconds since the epoch (from /proc: no ps needed).
_slurm_started_at() {
    local ticks boot
    ticks="$(awk '{ print $22 }' "/proc/$1/stat" 2>/dev/null)" || return 1
    boot="$(awk '/^btime/ { print $2 }' /proc/stat)"
    [ -n "$ticks" ] && [ -n "$boot" ] && echo $((boot + ticks / $(getconf CLK_TCK)))
}

# slurmd loads the mpi/pmix plugin when it starts, and one started before the PMIx library was
# installed fails every step launch ("Socket timed out") until it restarts (seen on bookworm):
# stop such a slurmd of this cluster, and `up` starts it again.
_slurm_stop_slurmd_without_pmix() {
    local pid lib started installed
    pid="$(cat "$_slurm_dir/run/slurmd.started" 2>/dev/null)"
    _slurm_alive "$pid" slurmd || return 0
    lib="$(_slurm_pmix_lib)" || return 0
    started="$(_slurm_started_at "$pid")" || return 0
    installed="$(stat -c %Z "$lib")"
    if [ "$installed" -ge "$started" ]; then
        _slurm_log "restarting slurmd ($pid): it started before $lib was installed"
        _slurm_stop_pid "$_slurm_dir/run/slurmd.started" slurmd
    fi
}

_slurm_print_logs() {
    local f
    for f in "$_slurm_dir"/log/*; do
        [ -f "$f" ] || continue
        echo "----- $f (last 40 lines) -----" >&2
        tail -n 40 "$f" >&2
    done
}

# True when the node takes jobs: idle, or busy with some (a re-run `up` while jobs run).
_slurm_node_ready() {
    SLURM_CONF="$_slurm_dir/slurm.conf" timeout 5 sinfo -h -N -o '%T' 2>/dev/null |
        grep -Eqx '(idle|mixed|allocated|completing)'
}

_slurm_up() {
    if [ "$(id -u)" != 0 ]; then
        _slurm_log "run me as root: the private cluster's daemons run as root"
        return 1
    fi
    _slurm_install || { _slurm_log "installing SLURM/munge failed"; return 1; }
    mkdir -p "$_slurm_dir"/{munge,state,spool,log,run}
    chmod 0755 "$_slurm_dir/munge"
    chmod 0755 "$_slurm_dir" "$_slurm_dir/run" "$_slurm_dir/log"
    if [ ! -f "$_slurm_dir/slurm.conf" ] ||
        ! { _slurm_pid_is "$_slurm_dir/run/slurmctld.started" slurmctld &&
            _slurm_pid_is "$_slurm_dir/run/slurmd.started" slurmd; }; then
        _slurm_write_conf
    fi
    _slurm_stop_slurmd_without_pmix
    _slurm_start_munged || { _slurm_log "munged did not start"; _slurm_print_logs; return 1; }
    # -i: start even when a previous instance left state files behind.
    _slurm_start_daemon slurmctld -i
    _slurm_start_daemon slurmd
    local waited=0
    until _slurm_node_ready; do
        if [ "$waited" -ge "$_slurm_timeout" ]; then
            _slurm_log "node not ready after ${_slurm_timeout}s; sinfo says:"
            SLURM_CONF="$_slurm_dir/slurm.conf" timeout 5 sinfo -N -l >&2 || true
            _slurm_print_logs
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    local node
    node="$(SLURM_CONF="$_slurm_dir/slurm.conf" sinfo -h -N -o '%N %T %c CPUs %m MB')"
    _slurm_log "up in ${waited}s: $node"
    export SLURM_CONF="$_slurm_dir/slurm.conf"
    if [ -n "${GITHUB_ENV:-}" ]; then echo "SLURM_CONF=$SLURM_CONF" >>"$GITHUB_ENV"; fi
    echo "export SLURM_CONF=$SLURM_CONF"
}

# Sends TERM (then KILL after 15 s) to the process whose PID file is $1, if it is still daemon $2.
_slurm_stop_pid() {
    local file="$1" name="$2" pid i
    pid="$(cat "$file" 2>/dev/null)"
    if _slurm_alive "$pid" "$name"; then
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 150); do
            _slurm_alive "$pid" "$name" || break
            sleep 0.1
        done
        if _slurm_alive "$pid" "$name"; then
            _slurm_log "$name ($pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -f "$file"
}

_slurm_down() {
    local conf="$_slurm_dir/slurm.conf"
    if _slurm_pid_is "$_slurm_dir/run/slurmctld.started" slurmctld; then
        # Only this private cluster's jobs: SLURM_CONF points at it.
        local jobs
        jobs="$(SLURM_CONF="$conf" timeout 5 squeue -h -o '%A' 2>/dev/null | sort -u)"
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            SLURM_CONF="$conf" timeout 5 scancel $jobs 2>/dev/null
            sleep 2
        fi
    fi
    _slurm_stop_pid "$_slurm_dir/run/slurmd.started" slurmd
    _slurm_stop_pid "$_slurm_dir/run/slurmctld.started" slurmctld
    _slurm_stop_pid "$_slurm_dir/run/munged.pid" munged
    _slurm_log "down (state and logs kept in $_slurm_dir)"
}

_slurm_status() {
    local name
    for name in slurmctld slurmd; do
        if _slurm_pid_is "$_slurm_dir/run/$name.started" "$name"; then
            _slurm_log "$name running (pid $(cat "$_slurm_dir/run/$name.started"))"
        else
            _slurm_log "$name not running"
        fi
    done
    _slurm_node_ready
}

_slurm_main() {
    case "${1:-}" in
        up) _slurm_up ;;
        down) _slurm_down ;;
        status) _slurm_status ;;
        *)
            echo "usage: bash .ci/slurm.sh up|down|status" >&2
            return 2
            ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    _slurm_main "$@"
    exit $?
else
    # Sourced: `up` also exports SLURM_CONF into the caller's shell.
    _slurm_main "$@" >/dev/null || return $?
fi
