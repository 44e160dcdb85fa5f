#!/bin/sh
# systemd-analyze verify on serv6's units as an administrator ends up with
# them: installed under ROOT (a staged install, or an unpacked package)
# with PREFIX, plus the metrics drop-in exactly as docs/OPERATIONS.md
# gives it, where `systemctl edit` puts it. Passes only if verify says
# nothing at all: a warning (a drop-in line it ignores, say) is a failure.
# Used by tests/install.sh and tests/deb.sh. Usage: verify-units.sh ROOT PREFIX
set -u
root=$1
prefix=$2
doc=$(dirname "$0")/../docs/OPERATIONS.md
units=$root$prefix/lib/systemd/system
etc=$root/etc/systemd/system
mkdir -p "$etc/serv6.service.d"
# The first fenced block after the text that says `systemctl edit serv6.service`.
awk '/systemctl edit serv6\.service/ { after = 1 }
     after && /^```/ { if (inside) exit; inside = 1; next }
     inside' "$doc" >"$etc/serv6.service.d/override.conf"
if ! grep -q '^\[Service\]' "$etc/serv6.service.d/override.conf"; then
    echo "no [Service] drop-in after 'systemctl edit serv6.service' in $doc"
    exit 1
fi
# --root reads every unit under ROOT, systemd's own too; verify needs this
# one to exist, and nothing of it.
printf '[Unit]\nDescription=a stand-in for the system one\n' >"$etc/sysinit.target"
said=$(MANPATH=$root$prefix/share/man systemd-analyze verify --root="$root" \
    "$units/serv6.service" "$units/serv6.socket" 2>&1)
status=$?
[ -z "$said" ] || echo "$said" | sed 's/^/systemd-analyze: /'
[ "$status" = 0 ] && [ -z "$said" ]
