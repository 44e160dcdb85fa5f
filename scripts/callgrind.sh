#!/bin/sh
# Instructions per exchange of a serv6 binary, counted by callgrind: the
# user-space instructions of all its threads for N sequential exchanges on
# loopback, less those of a run with none (start-up and shutdown). Unlike
# wall-clock figures, the count repeats run after run on a shared machine.
# With LOG=file the exchange log goes to a file instead (--quiet otherwise).
#   sh scripts/callgrind.sh target/release/serv6 [N]    (apt-get install valgrind)
set -eu
serv6=$1
n=${2:-2000}
command -v valgrind >/dev/null || { echo "callgrind: valgrind is not installed"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# Runs serv6 under callgrind for $1 exchanges; prints its total instructions.
count() {
    if [ "${LOG:-}" = file ]; then quiet=; log="$dir/log"; else quiet=--quiet; log=/dev/null; fi
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --callgrind-out-file="$dir/out.%p" \
        "$serv6" --port 0 --bind 127.0.0.1 $quiet >"$log" 2>"$dir/err" &
    pid=$!
    while ! grep -q "listening on" "$dir/err" 2>/dev/null; do sleep 0.1; done
    port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$dir/err" | head -1)
    python3 - "$port" "$1" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"hola\n")
    while s.recv(4096):
        pass
    s.close()
PY
    kill -TERM "$pid"
    wait "$pid" || true
    total=$(grep -h '^summary:' "$dir"/out.* | awk '{s += $2} END {print s}')
    rm -f "$dir"/out.*
    echo "$total"
}

idle=$(count 0)
busy=$(count "$n")
echo "$serv6${LOG:+ (log to a $LOG)}: $(( (busy - idle) / n )) instructions per exchange ($n exchanges; $idle for start and stop)"
