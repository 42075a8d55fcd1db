#!/bin/sh
# two-host-lab.sh: three small "computers" on one Linux machine, to try the
# course's servers across a real network link (chapter 9).
#
#   sudo sh docs/two-host-lab.sh up       build the lab
#   sudo sh docs/two-host-lab.sh status   show each host's addresses
#   sudo sh docs/two-host-lab.sh down     remove it again
#
# Each computer is a network namespace: a private copy of the network stack
# with its own interfaces, addresses, routes and ports. A veth pair is a
# virtual cable between two of them. The lab:
#
#   nlab-server   eth0 192.168.77.1/24 fd00:77::1/64  ----  nlab-laptop    eth0 192.168.77.2/24 fd00:77::2/64
#                 eth1 203.0.113.1/24  2001:db8::1/64 ----  nlab-stranger  eth0 203.0.113.2/24  2001:db8::2/64
#
# The laptop is on a private network, like a computer at home. The stranger
# has addresses from ranges reserved for documentation: they look like
# public internet addresses, but belong to nobody. No host has a route out
# of the lab, so nothing you do inside it reaches any real network.
#
# Run a program on a host with:  sudo ip netns exec nlab-laptop PROGRAM ARGS
# Needs root and the `ip` tool (package iproute2). Names start with
# NETLESSONS_LAB_PREFIX (default nlab), so they never clash with anything else.
set -eu

prefix="${NETLESSONS_LAB_PREFIX:-nlab}"
server="$prefix-server"
laptop="$prefix-laptop"
stranger="$prefix-stranger"

fail() {
    echo "two-host-lab: $*" >&2
    exit 1
}

exists() {
    # `ip netns list` prints "NAME" or "NAME (id: N)"; compare whole names.
    ip netns list | cut -d ' ' -f 1 | grep -qx "$1"
}

up() {
    if exists "$server" || exists "$laptop" || exists "$stranger"; then
        fail "the lab is already up (remove it with: sudo sh $0 down)"
    fi
    # If a step fails half way, take down what was built.
    trap 'down >/dev/null 2>&1' EXIT

    # Three computers. A new namespace has only a loopback interface, and
    # it is down: even 127.0.0.1 does not work until it is up.
    for host in "$server" "$laptop" "$stranger"; do
        ip netns add "$host"
        ip -n "$host" link set lo up
    done

    # Two cables. Each end is created directly inside its namespace.
    ip link add eth0 netns "$server" type veth peer name eth0 netns "$laptop"
    ip link add eth1 netns "$server" type veth peer name eth0 netns "$stranger"

    # Addresses. `nodad` makes an IPv6 address usable at once (without it,
    # duplicate address detection keeps it unusable for a second or two).
    ip -n "$server" addr add 192.168.77.1/24 dev eth0
    ip -n "$server" addr add fd00:77::1/64 dev eth0 nodad
    ip -n "$server" addr add 203.0.113.1/24 dev eth1
    ip -n "$server" addr add 2001:db8::1/64 dev eth1 nodad
    ip -n "$laptop" addr add 192.168.77.2/24 dev eth0
    ip -n "$laptop" addr add fd00:77::2/64 dev eth0 nodad
    ip -n "$stranger" addr add 203.0.113.2/24 dev eth0
    ip -n "$stranger" addr add 2001:db8::2/64 dev eth0 nodad

    # Plug the cables in.
    ip -n "$server" link set eth0 up
    ip -n "$server" link set eth1 up
    ip -n "$laptop" link set eth0 up
    ip -n "$stranger" link set eth0 up
    # A cable reports UP a moment after both of its ends are up; wait for
    # that (at most two seconds) so that `status` below shows the truth.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        if ip -n "$laptop" link show eth0 | grep -q 'state UP' &&
            ip -n "$stranger" link show eth0 | grep -q 'state UP'; then
            break
        fi
        sleep 0.2
    done

    trap - EXIT
    status
    echo
    echo "Run a program on a host:  sudo ip netns exec $laptop PROGRAM ARGS"
    echo "Remove the lab:           sudo sh $0 down"
}

down() {
    # Deleting a namespace deletes its interfaces; a veth pair goes when
    # either end goes. Programs still running inside keep it alive until
    # they exit, so stop your servers first.
    for host in "$server" "$laptop" "$stranger"; do
        if exists "$host"; then
            ip netns del "$host"
            echo "removed $host"
        fi
    done
}

status() {
    for host in "$server" "$laptop" "$stranger"; do
        if exists "$host"; then
            echo "$host:"
            ip -n "$host" -brief addr show | sed 's/^/    /'
        else
            echo "$host: not up"
        fi
    done
}

command -v ip >/dev/null 2>&1 || fail "the \`ip\` tool is missing (install the iproute2 package)"
[ "$(id -u)" = 0 ] || fail "network namespaces need root: sudo sh $0 ${1:-up}"

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
*)
    echo "usage: sudo sh $0 up|status|down" >&2
    exit 2
    ;;
esac
