#!/usr/bin/env bash
# Start/stop ngIRCd 26 and InspIRCd 3.15 as TLS benchmark targets on 127.0.0.1.
#
#   irc-servers.sh start ngircd|inspircd CERTS_DIR RUNDIR [CPU]
#   irc-servers.sh stop [RUNDIR [ngircd|inspircd]]
#   irc-servers.sh status [RUNDIR]
#
# start  writes RUNDIR/<server>.conf from <server>.conf.in next to this script, copies
#        CERTS_DIR/server.pem and server-key.pem to RUNDIR/tls/, raises the descriptor limit,
#        starts the server in the foreground mode (as a background child), pinned to CPU
#        (default 0) with taskset, waits until the TLS port completes a handshake (verified
#        against CERTS_DIR/ca.pem when present) and prints the server's PID on stdout.
#        Everything the server writes (pid file, log, MOTD, config) stays in RUNDIR.
# stop   stops the server(s) started with that RUNDIR (all started ones without RUNDIR):
#        SIGTERM to the recorded PID, SIGKILL after 10 s.
#
# Environment:
#   NGIRCD_PORT (6697)  INSPIRCD_PORT (6698)  TLS ports on 127.0.0.1
#   BENCH_USER (irc)    unprivileged user the servers run as when this script runs as root
#   BENCH_NOFILE (65536) wanted descriptor limit; falls back to the hard limit
#   START_TIMEOUT (30)  seconds to wait for the TLS port
# When a server binary is missing and the script runs as root, it runs
# "apt-get install -y ngircd|inspircd".
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REGISTRY=${TMPDIR:-/tmp}/irc-servers.$(id -u).list   # lines: "server pid rundir"

die() { echo "irc-servers.sh: $*" >&2; exit 1; }
log() { echo "irc-servers.sh: $*" >&2; }

usage() {
    sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

binary_of() {
    case $1 in
        ngircd) echo /usr/sbin/ngircd ;;
        inspircd) echo /usr/sbin/inspircd ;;
        *) die "unknown server '$1' (ngircd or inspircd)" ;;
    esac
}

port_of() {
    case $1 in
        ngircd) echo "${NGIRCD_PORT:-6697}" ;;
        inspircd) echo "${INSPIRCD_PORT:-6698}" ;;
    esac
}

# True if PID is alive and is the given server (guards against recycled PIDs).
is_server_pid() {
    local pid=$1 server=$2 comm
    [[ -r /proc/$pid/comm ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$server" ]]
}

port_busy() {
    # ss prints the header line plus one line per listening socket on that port.
    [[ $(ss -Htln "sport = :$1" 2>/dev/null | wc -l) -gt 0 ]]
}

tls_ready() {
    local port=$1 ca=$2 out
    local args=(-connect "127.0.0.1:$port" -servername localhost)
    [[ -f $ca ]] && args+=(-CAfile "$ca" -verify_return_error -verify_ip 127.0.0.1)
    out=$(timeout 5 openssl s_client "${args[@]}" </dev/null 2>&1) || return 1
    if [[ -f $ca ]]; then
        grep -q 'Verify return code: 0 (ok)' <<<"$out"
    else
        grep -q '^Server certificate' <<<"$out"
    fi
}

ensure_installed() {
    local server=$1 bin
    bin=$(binary_of "$server")
    [[ -x $bin ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "$bin missing; install it: apt-get install -y $server"
    log "$bin missing, installing the Debian package $server"
    # The packages' init scripts must not start a system-wide instance (no systemd here).
    local policy=/usr/sbin/policy-rc.d created_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$server" >&2 || {
        [[ -n $created_policy ]] && rm -f "$policy"
        die "apt-get install $server failed"
    }
    [[ -n $created_policy ]] && rm -f "$policy"
    [[ -x $bin ]] || die "$bin still missing after installing $server"
}

render() {   # template output rundir port uid gid
    sed -e "s|@RUNDIR@|$3|g" -e "s|@PORT@|$4|g" -e "s|@UID@|$5|g" -e "s|@GID@|$6|g" "$1" >"$2"
}

cmd_start() {
    [[ $# -ge 3 && $# -le 4 ]] || usage
    local server=$1 certs=$2 rundir=$3 cpu=${4:-0}
    local bin port conf pid
    bin=$(binary_of "$server")
    port=$(port_of "$server")
    [[ $port =~ ^[0-9]+$ ]] || die "bad port '$port'"
    [[ $cpu =~ ^[0-9,-]+$ ]] || die "bad CPU list '$cpu'"
    [[ -f $certs/server.pem && -f $certs/server-key.pem ]] ||
        die "$certs must contain server.pem and server-key.pem (and ca.pem for the check)"
    certs=$(cd "$certs" && pwd)
    ensure_installed "$server"
    command -v taskset >/dev/null || die "taskset missing (util-linux)"
    command -v openssl >/dev/null || die "openssl missing"

    if [[ -f $rundir/$server.started ]]; then
        pid=$(cat "$rundir/$server.started")
        is_server_pid "$pid" "$server" && die "$server already running from $rundir (PID $pid)"
    fi
    port_busy "$port" && die "port $port is already in use"
    mkdir -p "$rundir"
    rundir=$(cd "$rundir" && pwd)
    [[ $rundir != *'|'* ]] || die "RUNDIR must not contain '|'"

    # Runtime files. The key is copied so the unprivileged server user can read it;
    # RUNDIR is a scratch directory that must not be committed.
    mkdir -p "$rundir/tls" "$rundir/ngircd.conf.d"
    install -m 0644 "$certs/server.pem" "$rundir/tls/server.pem"
    install -m 0600 "$certs/server-key.pem" "$rundir/tls/server-key.pem"
    [[ -f $certs/ca.pem ]] && install -m 0644 "$certs/ca.pem" "$rundir/tls/ca.pem"
    echo "$server benchmark instance" >"$rundir/$server.motd"
    # Unprivileged user: ngIRCd would switch from root to "nobody" on its own, InspIRCd
    # refuses to run as root without --runasroot.
    local runas=() uid gid
    uid=$(id -u) gid=$(id -g)
    if [[ $uid -eq 0 ]]; then
        local user=${BENCH_USER:-irc}
        id "$user" >/dev/null 2>&1 || die "user $user does not exist (set BENCH_USER)"
        uid=$(id -u "$user") gid=$(id -g "$user")
        [[ $uid -ne 0 ]] || die "BENCH_USER must not be root"
        runas=(setpriv --reuid="$uid" --regid="$gid" --clear-groups --)
    fi
    conf=$rundir/$server.conf
    render "$HERE/$server.conf.in" "$conf" "$rundir" "$port" "$uid" "$gid"
    rm -f "$rundir/$server.pid"
    ((${#runas[@]} == 0)) || chown -R "$uid:$gid" "$rundir"

    # Descriptor limit: one per client plus a few; inherited by the server.
    local want=${BENCH_NOFILE:-65536} hard
    if ! ulimit -n "$want" 2>/dev/null; then
        hard=$(ulimit -Hn)
        [[ $hard == unlimited ]] && hard=$want
        ulimit -n "$hard"
        log "ulimit -n $want not permitted, using the hard limit $hard"
    fi

    local args
    case $server in
        ngircd) args=(-n -f "$conf") ;;
        inspircd) args=(--nofork --config "$conf") ;;
    esac
    # taskset, setpriv and nohup all exec, so $! is the server's own PID.
    cd "$rundir"
    nohup taskset -c "$cpu" "${runas[@]}" "$bin" "${args[@]}" \
        >>"$rundir/$server.out" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$rundir/$server.started"
    echo "$server $pid $rundir" >>"$REGISTRY"

    local deadline=$((SECONDS + ${START_TIMEOUT:-30}))
    until tls_ready "$port" "$certs/ca.pem"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$rundir/$server.out" >&2 || true
            die "$server exited during startup (see $rundir/$server.out)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$rundir/$server.out" >&2 || true
            kill "$pid" 2>/dev/null || true
            die "$server did not answer TLS on 127.0.0.1:$port within ${START_TIMEOUT:-30}s"
        fi
        sleep 0.2
    done
    log "$server ready: TLS on 127.0.0.1:$port, CPU $cpu, nofile $(ulimit -n), PID $pid, files in $rundir"
    echo "$pid"
}

stop_one() {   # server pid rundir
    local server=$1 pid=$2 rundir=$3 i
    if is_server_pid "$pid" "$server"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            is_server_pid "$pid" "$server" || break
            sleep 0.1
        done
        if is_server_pid "$pid" "$server"; then
            log "$server (PID $pid) ignored SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $server (PID $pid, $rundir)"
    else
        log "$server (PID $pid, $rundir) is not running"
    fi
    rm -f "$rundir/$server.started"
}

cmd_stop() {
    local rundir=${1:-} only=${2:-} server pid dir found=0
    [[ -n $only ]] && binary_of "$only" >/dev/null
    if [[ -n $rundir ]]; then
        [[ -d $rundir ]] || die "no such RUNDIR $rundir"
        rundir=$(cd "$rundir" && pwd)
        for server in ngircd inspircd; do
            [[ -z $only || $only == "$server" ]] || continue
            [[ -f $rundir/$server.started ]] || continue
            stop_one "$server" "$(cat "$rundir/$server.started")" "$rundir"
            found=1
        done
        ((found)) || log "nothing started from $rundir"
    else
        [[ -f $REGISTRY ]] || { log "nothing started"; return 0; }
        while read -r server pid dir; do
            [[ -f $dir/$server.started && $(cat "$dir/$server.started") == "$pid" ]] || continue
            stop_one "$server" "$pid" "$dir"
        done <"$REGISTRY"
        rm -f "$REGISTRY"
    fi
    if [[ -f $REGISTRY ]]; then   # drop entries that are no longer running
        local tmp
        tmp=$(mktemp)
        while read -r server pid dir; do
            is_server_pid "$pid" "$server" && echo "$server $pid $dir"
        done <"$REGISTRY" >"$tmp" || true
        mv "$tmp" "$REGISTRY"
    fi
}

cmd_status() {
    local rundir=${1:-} server pid dir
    if [[ -n $rundir ]]; then
        rundir=$(cd "$rundir" && pwd)
        for server in ngircd inspircd; do
            [[ -f $rundir/$server.started ]] || continue
            pid=$(cat "$rundir/$server.started")
            is_server_pid "$pid" "$server" && echo "$server running PID $pid $rundir" ||
                echo "$server not running ($rundir)"
        done
    elif [[ -f $REGISTRY ]]; then
        while read -r server pid dir; do
            is_server_pid "$pid" "$server" && echo "$server running PID $pid $dir"
        done <"$REGISTRY" || true
    fi
}

case ${1:-} in
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    status) shift; cmd_status "$@" ;;
    *) usage ;;
esac
