#!/bin/sh
# Starts serv6 on a free port, runs a few exchanges with cli6 and with a raw
# Python client, then stops the server with SIGTERM. Usage: demo.sh BINDIR
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
cat <&3 >&2 &
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
echo "--- the server's log"
kill -TERM "$pid"
wait "$pid" || true
cat "$dir/log"
