#!/bin/sh
# install.sh BIN: install gresec under $DESTDIR$PREFIX (make install).
# With an empty DESTDIR, as root, it also creates the gresec user and a
# random PSK file owned by it, and never overwrites an existing config
# or PSK.
set -eu
BIN=$1
: "${PREFIX:=/usr/local}" "${DESTDIR:=}"
SBINDIR=$PREFIX/sbin
MANDIR=$PREFIX/share/man
OS=$(uname -s)
case $OS in
FreeBSD) ETC=$PREFIX/etc/gresec ;;
*) ETC=/etc/gresec ;;
esac

install -d -m 755 "$DESTDIR$SBINDIR" "$DESTDIR$MANDIR/man8" "$DESTDIR$MANDIR/man5"
install -m 755 "$BIN" "$DESTDIR$SBINDIR/gresec"
install -m 644 man/gresec.8 "$DESTDIR$MANDIR/man8/gresec.8"
install -m 644 man/gresec.toml.5 "$DESTDIR$MANDIR/man5/gresec.toml.5"
case $OS in
Linux)
	: "${UNITDIR:=/lib/systemd/system}"
	install -d -m 755 "$DESTDIR$UNITDIR"
	sed "s|@SBINDIR@|$SBINDIR|g" dist/systemd/gresec@.service >"$DESTDIR$UNITDIR/gresec@.service"
	chmod 644 "$DESTDIR$UNITDIR/gresec@.service"
	sed "s|@SBINDIR@|$SBINDIR|g" dist/systemd/gresec.service >"$DESTDIR$UNITDIR/gresec.service"
	chmod 644 "$DESTDIR$UNITDIR/gresec.service"
	;;
FreeBSD)
	install -d -m 755 "$DESTDIR$PREFIX/etc/rc.d"
	install -m 555 dist/freebsd/gresec "$DESTDIR$PREFIX/etc/rc.d/gresec"
	;;
OpenBSD)
	install -d -m 755 "$DESTDIR/etc/rc.d"
	install -m 555 dist/openbsd/gresec "$DESTDIR/etc/rc.d/gresec"
	;;
esac
install -d -m 700 "$DESTDIR$ETC" "$DESTDIR$ETC/tunnels.d" # tunnels.d: gresec.service runs every *.toml there
install -m 644 dist/gresec.toml.example "$DESTDIR$ETC/gresec.toml.example"
[ -e "$DESTDIR$ETC/gresec.toml" ] || install -m 600 dist/gresec.toml.example "$DESTDIR$ETC/gresec.toml"
if [ ! -e "$DESTDIR$ETC/psk" ]; then
	# 32 random bytes, base64: a key, not a password.
	(umask 077 && head -c 32 /dev/urandom | base64 >"$DESTDIR$ETC/psk")
fi

if [ -z "$DESTDIR" ] && [ "$(id -u)" -eq 0 ]; then
	if ! id gresec >/dev/null 2>&1; then
		case $OS in
		Linux) useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gresec ;;
		FreeBSD) pw useradd gresec -d /nonexistent -s /usr/sbin/nologin -c "gresec daemon" ;;
		OpenBSD) useradd -d /nonexistent -s /sbin/nologin -c "gresec daemon" gresec ;;
		esac
	fi
	# The daemon re-reads these on SIGHUP as gresec.
	chown -R gresec:gresec "$ETC"
fi
echo "installed gresec in $DESTDIR$SBINDIR; config in $DESTDIR$ETC"
