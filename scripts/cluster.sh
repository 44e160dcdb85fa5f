#!/bin/sh
# Two serv6 instances on free loopback ports behind HAProxy on PORT (5006),
# all in the foreground; Ctrl-C stops them all, and so does any one of them
# exiting. Usage: cluster.sh BINDIR
set -eu
bin=${1:-target/release}
front=${PORT:-5006}
if ! command -v haproxy >/dev/null 2>&1; then
    echo "cluster: HAProxy is not installed; on Debian or Ubuntu: sudo apt-get install haproxy" >&2
    exit 1
fi

# Whether something listens on TCP port $1 of loopback already.
port_taken() {
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Htln "sport = :$1")" ]
    else
        ! python3 -c 'import socket, sys; socket.create_server(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
    fi
}
if port_taken "$front"; then
    echo "cluster: port $front is already in use (a serv6 from make servidor?); stop it, or choose another: make cluster PORT=5007" >&2
    exit 1
fi

dir=$(mktemp -d)
pids=
interrupted=
cleanup() {
    trap - EXIT INT TERM
    # A part already gone makes `kill` fail: that must not stop the cleanup.
    set +e
    # A Ctrl-C without job control reached every part already: a second
    # signal would make serv6 exit at once, without its summary.
    # shellcheck disable=SC2086
    if [ -n "$interrupted" ] && [ -z "$own_groups" ]; then
        wait
    elif [ -n "$pids" ]; then
        kill $pids 2>/dev/null
        wait
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'interrupted=1; exit 130' INT
trap 'exit 143' TERM
# Each part in a process group of its own where there is a terminal: then
# Ctrl-C reaches this script alone, which stops each part once.
own_groups=
if [ -t 0 ] && (set -m) 2>/dev/null; then
    set -m
    own_groups=1
fi

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
SERV6_FRONT=127.0.0.1:$front SERV6_A=127.0.0.1:$a SERV6_B=127.0.0.1:$b SERV6_CHECK=2s \
    haproxy -db -f contrib/haproxy/serv6.cfg &
pids="$pids $!"
echo "cluster: HAProxy on 127.0.0.1:$front; try: cli6 -p $front --count 10"
# Until any part exits: then the rest are stopped, and the script fails.
while :; do
    for pid in $pids; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "cluster: a part exited (pid $pid); stopping the rest" >&2
            exit 1
        fi
    done
    sleep 1
done
