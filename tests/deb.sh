#!/bin/sh
# `make deb`, then the package as an administrator meets it. Always (with
# dpkg-deb and lintian; CI installs them): the package is built in the
# target directory and lintian checks it. Then, only when asked, since it
# changes this machine (`make test-system`, or CI=true as in .ci/run), and
# only as root with apt-get and no serv6 package installed: apt-get
# install, the installed programs and manual page, and a purge that leaves
# nothing behind. Run by `make test` (through `make test-install`).
set -u
pass=0 fail=0 skip=0
check() {
    what=$1
    shift
    if "$@"; then pass=$((pass + 1)) && echo "ok: $what"; else fail=$((fail + 1)) && echo "FAILED: $what"; fi
}
skip() {
    skip=$((skip + 1)) && echo "skipped: $1"
}
finish() {
    echo "deb: $pass passed, $fail failed, $skip skipped"
    [ "$fail" -eq 0 ]
    exit
}
for tool in dpkg-deb lintian; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        skip "the Debian package test needs $tool (apt-get install dpkg-dev lintian)" && finish
    fi
done

deb=$(make -s deb | tail -1)
check "make deb builds $(basename "$deb")" test -f "$deb"
[ -f "$deb" ] || finish
# lintian's own temporary files, in the target directory, not in /tmp.
work=$(mktemp -d "$(dirname "$deb")/deb-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
lint=$(TMPDIR=$work lintian "$deb" 2>&1 | grep -v 'running with root privileges')
echo "$lint" | sed 's/^/lintian: /'
# One warning is expected: a package not for Debian's archive closes no ITP bug.
check "lintian reports no errors, and no warning but initial-upload-closes-no-bugs" \
    sh -c '! echo "$1" | grep -v "initial-upload-closes-no-bugs" | grep -q "^[EW]:"' _ "$lint"

if command -v systemd-analyze >/dev/null 2>&1; then
    dpkg-deb -x "$deb" "$work/root"
    check "systemd-analyze verify passes on the package's units with OPERATIONS.md's metrics drop-in" \
        sh "$(dirname "$0")/verify-units.sh" "$work/root" /usr
else
    skip "systemd-analyze is not installed, so the package's units are not verified"
fi

if [ "${CI:-}" != true ] && [ -z "${SERV6_TEST_SYSTEM:-}" ]; then
    echo "deb: installing and purging the package is left to make test-system (it changes this machine)"
    finish
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || dpkg -s serv6 >/dev/null 2>&1; then
    skip "installing the package needs root, apt-get, and no serv6 package already installed" && finish
fi
files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }')
# What the package could leave beside its files: the link and state that
# enabling the socket makes, and formatted manual pages. Only what this run
# leaves counts: another test on this machine may have left some already.
traces() {
    find /etc/systemd /var/lib/systemd /var/cache/man \( -name '*serv6*' -o -name '*cli6*' \) 2>/dev/null | sort
}
traces_before=$(traces)
check "apt-get installs it" \
    sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null 2>&1' _ "$(realpath "$deb")"
check "the installed programs run" sh -c '{ /usr/sbin/serv6 --version && /usr/bin/cli6 --version; } >/dev/null'
# man finds the page (-w), then renders that file (-l): `man serv6` would
# also leave a formatted copy in /var/cache/man, which the purge does not
# remove.
check "man serv6 finds and shows the installed page" sh -c '
    page=$(man -w serv6 2>/dev/null) && [ "$page" = /usr/share/man/man8/serv6.8.gz ] &&
    MANWIDTH=80 man -l -P cat "$page" 2>/dev/null | grep -q "^SYNOPSIS"'
check "the installed serv6 serves, and cli6 asks it" sh -c '
    mkfifo "$1/err"
    /usr/sbin/serv6 --port 0 --bind 127.0.0.1 >/dev/null 2>"$1/err" &
    pid=$!
    exec 3<"$1/err"
    IFS= read -r listening <&3
    cat <&3 >/dev/null &
    /usr/bin/cli6 -4 -p "${listening##*:}" hola | grep -q "^received 4 bytes at "
    ok=$?
    kill "$pid"
    exit $ok' _ "$work"
check "apt-get purges it" \
    sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -q serv6 >/dev/null 2>&1'
left=
for file in $files; do [ -e "$file" ] && left="$left $file"; done
for trace in $(traces); do
    echo "$traces_before" | grep -qxF "$trace" || left="$left $trace"
done
left=${left# }
check "the purge leaves nothing behind${left:+ (left: $left)}" sh -c '[ -z "$1" ] && ! dpkg -s serv6 >/dev/null 2>&1' _ "$left"
finish
