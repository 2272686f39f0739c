#!/bin/sh
# apt-ensure.sh PKG...: install the Debian packages that are missing, once.
set -eu
missing=""
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "apt-ensure: missing packages:$missing; run as root (sudo make ...) to install them" >&2
	exit 1
fi
echo "apt-ensure: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# An update only when the package lists are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
	apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends $missing >/dev/null
