#!/bin/sh
# Two serv6 instances on free loopback ports behind HAProxy on PORT (5006),
# all in the foreground; Ctrl-C stops them all. Usage: cluster.sh BINDIR
set -eu
bin=${1:-target/release}
front=${PORT:-5006}
if ! command -v haproxy >/dev/null 2>&1; then
    echo "cluster: HAProxy is not installed; on Debian or Ubuntu: sudo apt-get install haproxy" >&2
    exit 1
fi
dir=$(mktemp -d)
pids=
cleanup() {
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill $pids 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts instance $1 and sets port_$1 from its listening line. (Not in a
# command substitution: that would wait for the instance's output to end.)
instance() {
    mkfifo "$dir/$1"
    "$bin/serv6" --bind 127.0.0.1 --port 0 --proxy-protocol 2>"$dir/$1" &
    pids="$pids $!"
    exec 3<"$dir/$1"
    IFS= read -r listening <&3
    cat <&3 >&2 &
    exec 3<&-
    eval "port_$1=\${listening##*:}"
}

instance a
instance b
a=$port_a
b=$port_b
echo "cluster: serv6 instances on 127.0.0.1:$a (PROXY v1) and 127.0.0.1:$b (PROXY v2)"
echo "cluster: HAProxy on 127.0.0.1:$front; try: cli6 -p $front --count 10"
SERV6_FRONT=127.0.0.1:$front SERV6_A=127.0.0.1:$a SERV6_B=127.0.0.1:$b SERV6_CHECK=2s \
    haproxy -db -f contrib/haproxy/serv6.cfg &
pids="$pids $!"
wait
