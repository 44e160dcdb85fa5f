#!/bin/sh
# `make deb`: serv6_VERSION-1_ARCH.deb from a staged `make install` under
# /usr, with dpkg-deb alone (no debhelper): the programs, the manual pages
# compressed, the systemd units, the copyright file and changelog, and the
# maintainer scripts beside this file. Usage: build.sh BINDIR VERSION TARGETDIR
set -eu
bin=$1
version=$2
target=$3
here=$(dirname "$0")
command -v dpkg-deb >/dev/null || { echo "deb: dpkg-deb is not installed (apt-get install dpkg-dev)" >&2; exit 1; }
arch=$(dpkg --print-architecture)
revision=1
name=serv6_${version}-${revision}_${arch}
stage=$target/deb/$name
rm -rf "$stage"
mkdir -p "$stage"
make -s install DESTDIR="$stage" PREFIX=/usr UNITDIR=/usr/lib/systemd/system >/dev/null
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$stage/usr/bin/cli6" "$stage/usr/sbin/serv6"
gzip -9n "$stage/usr/share/man/man1/cli6.1" "$stage/usr/share/man/man8/serv6.8"

doc=$stage/usr/share/doc/serv6
mkdir -p "$doc"
install -m 644 "$here/copyright" "$doc/copyright"
# The changelog's date is the release date the manual pages carry.
day=$("$bin/serv6" --generate-man | sed -n 's/^\.TH [^ ]* [0-9] \([0-9-]*\) .*/\1/p')
when=$(date -u -d "$day" -R)
sed -e "s/@VERSION@/$version-$revision/" -e "s/@DATE@/$when/" "$here/changelog" |
    gzip -9n > "$doc/changelog.Debian.gz"
chmod 644 "$doc/changelog.Debian.gz"

mkdir -p "$stage/DEBIAN"
for script in postinst prerm postrm; do
    install -m 755 "$here/$script" "$stage/DEBIAN/$script"
done
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version-$revision/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    "$here/control" > "$stage/DEBIAN/control"
(cd "$stage" && find usr -type f -exec md5sum {} + | sort -k 2 > DEBIAN/md5sums)
chmod 644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$target/$name.deb" >/dev/null
echo "$target/$name.deb"
