#!/usr/bin/env bash
# IntNW Lab topology, in plain shell (no Swift needed). See docs/testbed.md, Topology.
#
#   topology.sh up      [--prefix P] [--links veth|none]   create namespaces (and unshaped veth links)
#   topology.sh configure [--prefix P]                     addresses + routes on existing wifi0/cell0
#   topology.sh down    [--prefix P]                       remove namespaces, devices and processes
#   topology.sh status  [--prefix P]                       show what exists
#   topology.sh reclaim                                    remove every recorded testbed (make clean)
#   topology.sh reclaim-tests                              remove testbeds left by test runs (prefixes t*)
#
# With --links none only the namespaces are created: the user-space emulator (intnw-lab net up) then
# adds TUN devices named wifi0/cell0 on both sides and calls `configure`. The Swift Topology type
# issues the same commands; Tests/NetnsTests compare the two.
set -euo pipefail

STATE_DIR=${INTNW_STATE_DIR:-/run/intnw-lab}
PREFIX=intnw
LINKS=veth

die() { echo "topology.sh: $*" >&2; exit 1; }

cmd=${1:-}; shift || true
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=${2:?--prefix needs a value}; shift 2 ;;
        --links) LINKS=${2:?--links needs veth or none}; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ "$PREFIX" =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "prefix '$PREFIX' must be 1-8 lowercase letters/digits, starting with a letter"
[[ "$LINKS" == veth || "$LINKS" == none ]] || die "--links must be veth or none"

C="$PREFIX-client"
S="$PREFIX-server"

need_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces need CAP_NET_ADMIN): try sudo"
    command -v ip >/dev/null || die "'ip' not found: install iproute2 (make setup)"
    ip netns list >/dev/null 2>&1 || die "this kernel or container does not support network namespaces"
}

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

# Link table: interface  client-addr  server-addr  routing-table  default-metric
LINK_TABLE="wifi0 198.18.1.2 198.18.1.1 101 100
cell0 198.18.2.2 198.18.2.1 102 200"
SERVICE=198.19.0.1

record() { mkdir -p "$STATE_DIR/prefixes"; : > "$STATE_DIR/prefixes/$PREFIX"; }

up() {
    need_root
    record
    for ns in "$C" "$S"; do
        ns_exists "$ns" || ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    # Routes through a link whose carrier is down are ignored, so the main table falls back to
    # cellular when the OS notices WiFi is gone (docs/testbed.md, Topology).
    ip netns exec "$C" sysctl -qw net.ipv4.conf.all.ignore_routes_with_linkdown=1
    ip netns exec "$C" sysctl -qw net.ipv4.conf.default.ignore_routes_with_linkdown=1
    for ns in "$C" "$S"; do
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.default.rp_filter=0
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    ip -n "$S" addr replace "$SERVICE/32" dev lo
    if [ "$LINKS" = veth ]; then
        while read -r ifc _ _ _ _; do
            ip -n "$C" link show "$ifc" >/dev/null 2>&1 || ip link add "$ifc" netns "$C" type veth peer name "$ifc" netns "$S"
        done <<< "$LINK_TABLE"
        configure
    fi
}

configure() {
    need_root
    while read -r ifc caddr saddr table metric; do
        ip -n "$C" link show "$ifc" >/dev/null 2>&1 || die "$ifc missing in $C (start the emulator or use --links veth)"
        ip -n "$C" addr replace "$caddr/24" dev "$ifc"
        ip -n "$S" addr replace "$saddr/24" dev "$ifc"
        ip -n "$C" link set "$ifc" txqueuelen 5000 up
        ip -n "$S" link set "$ifc" txqueuelen 5000 up
        # A failed ARP lookup during an outage would otherwise wait a full second to retry.
        ip -n "$C" ntable change name arp_cache dev "$ifc" retrans 50
        ip -n "$S" ntable change name arp_cache dev "$ifc" retrans 50
        # Per-interface table + source rule: a socket bound to this address leaves on this link.
        ip -n "$C" route replace default via "$saddr" dev "$ifc" table "$table" onlink
        # Without carrier the route above is ignored; don't let bound sockets leak out of another link.
        ip -n "$C" route replace unreachable default table "$table" metric 65535
        ip -n "$C" rule del pref "$table" 2>/dev/null || true
        ip -n "$C" rule add pref "$table" from "$caddr" lookup "$table"
        # Main table: WiFi preferred (lower metric) while its carrier is up.
        ip -n "$C" route replace default via "$saddr" dev "$ifc" metric "$metric" onlink
    done <<< "$LINK_TABLE"
}

# True when pid file contents "$1" ("PID START_TICKS", or a bare PID from an older writer) name a
# live, non-zombie emulator process: the start time (field 22 of /proc/PID/stat) must match when
# recorded, and the command line must be an IntNW Lab program. A stale file whose pid was reused by
# another process is never acted on.
pid_is_emulator() {
    local pid start rest
    read -r pid start _ <<< "$1" || true
    [[ "$pid" =~ ^[0-9]+$ ]] && [ "$pid" -gt 1 ] && [ "$pid" != "$$" ] || return 1
    rest=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    rest=${rest##*) }
    # shellcheck disable=SC2086
    set -- $rest
    [ "${1:-Z}" != Z ] || return 1
    if [ -n "${start:-}" ]; then [ "${20:-}" = "$start" ] || return 1; fi
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qi intnw
}

# IntNW's shared-memory segments are /dev/shm/intnw-u<uid>-n<inode of the network namespace>
# (IntNW's SharedLayout.segmentName): remove those of namespace "$1" (before it is deleted).
remove_shm() {
    local ino f
    ino=$(stat -c %i "/run/netns/$1" 2>/dev/null) || return 0
    for f in /dev/shm/intnw-u*-n"$ino"; do
        [[ "$f" =~ ^/dev/shm/intnw-u[0-9]+-n${ino}$ ]] && rm -f -- "$f"
    done
    return 0
}

down() {
    need_root
    for ns in "$C" "$S"; do
        if ns_exists "$ns"; then
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [ -n "$pids" ] && kill -TERM $pids 2>/dev/null || true
        fi
    done
    if [ -f "$STATE_DIR/$PREFIX.pid" ]; then
        owner=$(head -c 64 "$STATE_DIR/$PREFIX.pid" 2>/dev/null | head -n 1 || true)
        if pid_is_emulator "$owner"; then
            pid=${owner%% *}
            kill -TERM "$pid" 2>/dev/null || true
            sleep 0.2
            pid_is_emulator "$owner" && kill -KILL "$pid" 2>/dev/null || true
        elif [ -n "$owner" ]; then
            echo "topology.sh: $STATE_DIR/$PREFIX.pid ('$owner') names no running emulator; not killing it" >&2
        fi
        rm -f "$STATE_DIR/$PREFIX.pid"
    fi
    for ns in "$C" "$S"; do
        if ns_exists "$ns"; then
            remove_shm "$ns"
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
            ip netns del "$ns"
        fi
    done
    rm -f "$STATE_DIR/prefixes/$PREFIX" "$STATE_DIR/$PREFIX.json"
}

status() {
    for ns in "$C" "$S"; do
        if ns_exists "$ns"; then
            echo "== $ns"
            ip -n "$ns" -br addr
        else
            echo "== $ns: absent"
        fi
    done
    if [ -f "$STATE_DIR/$PREFIX.pid" ]; then
        owner=$(head -c 64 "$STATE_DIR/$PREFIX.pid" 2>/dev/null | head -n 1 || true)
        pid_is_emulator "$owner" && echo "emulator pid ${owner%% *} running"
    fi
    return 0
}

reclaim_all() {
    local filter=$1
    local prefixes=""
    [ -d "$STATE_DIR/prefixes" ] && prefixes=$(ls "$STATE_DIR/prefixes")
    # Namespaces named like a testbed but never recorded (state dir lost on reboot) count too.
    prefixes="$prefixes $(ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^\([a-z][a-z0-9]*\)-\(client\|server\)$/\1/p')"
    for p in $(echo "$prefixes" | tr ' ' '\n' | sort -u); do
        [[ "$p" =~ $filter ]] || continue
        PREFIX=$p C="$p-client" S="$p-server" down
        echo "reclaimed testbed '$p'"
    done
}

case "$cmd" in
    up) up ;;
    configure) configure ;;
    down) down ;;
    status) status ;;
    reclaim) need_root; reclaim_all '^(intnw|t[a-z0-9]*|i[a-z0-9]*)$' ;;
    reclaim-tests) need_root; reclaim_all '^t[a-z0-9]*$' ;;
    ""|help) sed -n '2,15p' "$0" ;;
    *) die "unknown command '$cmd' (up, configure, down, status, reclaim, reclaim-tests)" ;;
esac
