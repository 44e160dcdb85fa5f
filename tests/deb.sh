#!/bin/sh
# `make deb`, then the package as an administrator meets it: lintian, then
# apt-get install, the installed programs and manual page, and a purge that
# leaves nothing behind. It changes the system, so it runs only as root with
# apt-get, dpkg-deb and lintian (CI installs them); otherwise it says why
# it skips. Run by `make test` (through `make test-install`).
set -u
pass=0 fail=0 skip=0
check() {
    what=$1
    shift
    if "$@"; then pass=$((pass + 1)) && echo "ok: $what"; else fail=$((fail + 1)) && echo "FAILED: $what"; fi
}
finish() {
    echo "deb: $pass passed, $fail failed, $skip skipped"
    [ "$fail" -eq 0 ]
    exit
}
for tool in dpkg-deb lintian apt-get; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "skipped: the Debian package test needs $tool (apt-get install dpkg-dev lintian)"
        skip=1 && finish
    fi
done
if [ "$(id -u)" != 0 ] || dpkg -s serv6 >/dev/null 2>&1; then
    echo "skipped: the Debian package test installs a package: it needs root and no serv6 package already installed"
    skip=1 && finish
fi

deb=$(make -s deb | tail -1)
check "make deb builds $(basename "$deb")" test -f "$deb"
lint=$(lintian "$deb" 2>&1 | grep -v 'running with root privileges')
echo "$lint" | sed 's/^/lintian: /'
# One warning is expected: a package not for Debian's archive closes no ITP bug.
check "lintian reports no errors, and no warning but initial-upload-closes-no-bugs" \
    sh -c '! echo "$1" | grep -v "initial-upload-closes-no-bugs" | grep -q "^[EW]:"' _ "$lint"
files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }')
check "apt-get installs it" \
    sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null 2>&1' _ "$(realpath "$deb")"
check "the installed programs run" sh -c '/usr/sbin/serv6 --version && /usr/bin/cli6 --version'
check "man serv6 shows the installed page" sh -c 'MANWIDTH=80 man -P cat serv6 2>/dev/null | grep -q "^SYNOPSIS"'
check "the installed serv6 serves, and cli6 asks it" sh -c '
    /usr/sbin/serv6 --port 0 --bind 127.0.0.1 2>"$1" &
    pid=$!
    for _ in 1 2 3 4 5 6 7 8 9 10; do grep -q "listening on" "$1" && break; sleep 0.2; done
    port=$(sed -n "s/.*127.0.0.1:\([0-9]*\).*/\1/p" "$1" | head -1)
    /usr/bin/cli6 -4 -p "$port" hola | grep -q "^received 4 bytes at "
    ok=$?
    kill "$pid"
    exit $ok' _ "$(mktemp)"
check "apt-get purges it" \
    sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -q serv6 >/dev/null 2>&1'
left=
for file in $files; do [ -e "$file" ] && left="$left $file"; done
# Nor what enabling the socket made: the link and deb-systemd-helper's state.
left="$left$(find /etc/systemd /var/lib/systemd -name '*serv6*' 2>/dev/null | tr '\n' ' ' | sed 's/^/ /; s/ $//')"
left=${left# }
check "the purge leaves nothing behind${left:+ (left: $left)}" sh -c '[ -z "$1" ] && ! dpkg -s serv6 >/dev/null 2>&1' _ "$left"
finish
