#!/bin/sh
# Starts serv6 on a free port, runs a few exchanges with cli6 and with a raw
# Python client, then stops the server with SIGTERM. Each section is shown
# whole and in order: what serv6 writes is kept until it has stopped.
# Usage: demo.sh BINDIR
set -eu
bin=${1:-target/release}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
mkfifo "$dir/err"

"$bin/serv6" --port 0 >"$dir/log" 2>"$dir/err" &
pid=$!
exec 3<"$dir/err"
# The first line serv6 writes is where it listens; reading it waits for it.
IFS= read -r listening <&3
echo "$listening"
# The rest of its standard error, until it exits, shown after the clients.
cat <&3 >"$dir/errors" &
errors=$!
port=${listening##*:}

echo "--- cli6 hola"
"$bin/cli6" --port "$port" hola
echo "--- cli6 reading lines from standard input"
printf 'uno\ndos\n' | "$bin/cli6" --port "$port"
echo "--- a raw Python client: send(), then recv(), no newline"
python3 - "$port" <<'PY'
import socket, sys
s = socket.create_connection(("localhost", int(sys.argv[1])))
s.send(b"hola desde python")
print(s.recv(1024).decode(), end="")
s.close()
PY
kill -TERM "$pid"
wait "$pid" || true
wait "$errors"
echo "--- serv6, stopped by SIGTERM: its standard error after the listening line"
cat "$dir/errors"
echo "--- serv6's log of the exchanges (standard output)"
cat "$dir/log"
