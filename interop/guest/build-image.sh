#!/bin/bash
# Builds the interop guest: a Debian bookworm (minbase) root with the stock
# kernel, strongSwan, OpenBSD iked, libreswan, BIRD 2 and the tools the
# scenarios drive, plus the
# kernel and an initrd extracted for qemu's -kernel/-initrd.
#
# Output: $GRESEC_INTEROP_CACHE/image-<hash>/{vmlinuz,initrd.img,rootfs.ext4,manifest.txt}
# where <hash> covers this script and guest-init.sh, so editing the recipe
# builds a new image and an unchanged recipe is a no-op. The last line on
# stdout is IMAGE_DIR=<dir>; progress goes to stderr.
#
# Host packages: qemu-system-x86 debootstrap e2fsprogs (install with
#   apt-get install -y --no-install-recommends ...). Needs root (debootstrap,
#   chroot) and the Debian mirror.
#
# Environment:
#   GRESEC_INTEROP_CACHE   cache directory (default /var/cache/gresec-interop)
#   GRESEC_INTEROP_MIRROR  Debian mirror (default: the first deb.debian.org-style
#                          URI of /etc/apt/sources.list*, else http://deb.debian.org/debian)
#   GRESEC_INTEROP_KEEP    keep this many older image-* directories (default 1)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GRESEC_INTEROP_CACHE:-/var/cache/gresec-interop}
suite=bookworm

# Guest packages, besides debootstrap's minbase. linux-image-amd64 pulls
# initramfs-tools; kmod for modprobe; zstd for the initrd.
packages=(
	linux-image-amd64 initramfs-tools kmod zstd
	iproute2 netbase iputils-ping procps tcpdump
	strongswan strongswan-swanctl libstrongswan-standard-plugins openiked
	bird2
)

# libreswan's package conflicts with strongswan-starter and strongswan-libcharon
# (both own /usr/sbin/ipsec, /etc/ipsec.conf), so apt will not install it next to
# strongSwan. Its runtime dependencies are installed by apt and the package
# itself is unpacked (not configured) into /opt/libreswan; /usr/libexec/ipsec,
# where pluto looks for its helpers (addconn, _updown), is a link to it and
# belongs to no other package. Nothing of it is enabled at boot: the guest's
# init is gresec-init, not systemd, and tests start pluto themselves.
unpacked=(libreswan)

log() { printf '[build-image %(%T)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
for tool in debootstrap mke2fs sha256sum unshare chroot; do
	command -v "$tool" >/dev/null || die "missing $tool; apt-get install -y --no-install-recommends qemu-system-x86 debootstrap e2fsprogs"
done

# Key the image by the recipe: this file and the guest init, plus the suite.
key=$( (cat "$here/build-image.sh" "$here/guest-init.sh"; echo "$suite") | sha256sum | cut -c1-16)
out=$cache/image-$key

mkdir -p "$cache"
# One build at a time: a second caller waits, then finds the image ready.
exec 9>"$cache/.lock"
flock 9
# Under the lock, any half-built directory is left over from a killed build.
rm -rf "$cache"/.build.*

if [ -f "$out/manifest.txt" ]; then
	log "cached: $out"
	echo "IMAGE_DIR=$out"
	exit 0
fi

mirror=${GRESEC_INTEROP_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(grep -rhoE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
		grep -v security | head -n1 | awk '{print $2}' || true)
	mirror=${mirror:-http://deb.debian.org/debian}
fi

start=$SECONDS
tmp=$(mktemp -d "$cache/.build.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
root=$tmp/root
mkdir -p "$cache/debs"

log "building image $key from $mirror into $tmp"
log "debootstrap $suite minbase (about 1-2 min)"
debootstrap --variant=minbase --components=main --cache-dir="$cache/debs" \
	"$suite" "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
	{ tail -n 30 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }

# Services must not start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"

# A small initrd: only what mounts an ext4 root on virtio-blk. Everything
# else loads from the root once it is up.
mkdir -p "$root/etc/initramfs-tools/conf.d"
cat >"$root/etc/initramfs-tools/conf.d/gresec.conf" <<'EOF'
MODULES=list
COMPRESS=zstd
RESUME=none
EOF
printf '%s\n' virtio_pci virtio_blk ext4 >"$root/etc/initramfs-tools/modules"

log "apt-get install ${packages[*]} (about 1-2 min)"
# A private mount namespace: proc and the .deb cache vanish with it, even on failure.
UNPACKED="${unpacked[*]}" unshare --mount --propagation private /bin/bash -euo pipefail -c '
	root=$1; debs=$2; shift 2
	mount -t proc proc "$root/proc"
	mount --bind "$debs" "$root/var/cache/apt/archives"
	export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin
	chroot "$root" apt-get update -q
	chroot "$root" apt-get install -y -q --no-install-recommends "$@"
	for pkg in $UNPACKED; do
		chroot "$root" /bin/sh -euc "cd /tmp && apt-get download -q $pkg"
		deb=$(ls "$root"/tmp/"$pkg"_*.deb)
		# Depends without versions and alternatives (the first is taken).
		deps=$(dpkg-deb -f "$deb" Depends | sed "s/([^)]*)//g; s/|[^,]*//g; s/,/ /g")
		chroot "$root" apt-get install -y -q --no-install-recommends $deps
		mkdir -p "$root/opt/$pkg"
		dpkg-deb -x "$deb" "$root/opt/$pkg"
		echo "$pkg $(dpkg-deb -f "$deb" Version) (unpacked in /opt/$pkg)" >>"$root/../manifest.unpacked"
		rm -f "$deb"
	done
	mkdir -p "$root/usr/libexec"
	ln -s /opt/libreswan/usr/libexec/ipsec "$root/usr/libexec/ipsec"
	chroot "$root" dpkg-query -W -f "\${Package} \${Version}\n" >"$root/../manifest.pkgs"
' bash "$root" "$cache/debs" "${packages[@]}" >"$tmp/apt.log" 2>&1 ||
	{ tail -n 30 "$tmp/apt.log" >&2; die "apt-get install failed"; }

log "extracting kernel and initrd"
kver=$(basename "$(ls -d "$root"/lib/modules/*/ | sort -V | tail -n1)")
[ -f "$root/boot/vmlinuz-$kver" ] || die "no kernel in image"
[ -f "$root/boot/initrd.img-$kver" ] || die "no initrd in image"
cp "$root/boot/vmlinuz-$kver" "$tmp/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$tmp/initrd.img"

log "configuring guest"
install -m 0755 "$here/guest-init.sh" "$root/sbin/gresec-init"
echo gresec-guest >"$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n127.0.1.1 gresec-guest\n' >"$root/etc/hosts"
: >"$root/etc/resolv.conf"
rm -f "$root/usr/sbin/policy-rc.d"
# Shrink the image: the kernel lives outside it; nothing in the guest needs apt lists or docs.
rm -rf "$root"/boot/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
	"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
# Drop the modules the guest can never use (sound, GPUs, wireless, ...) to keep the image small.
rm -rf "$root/lib/modules/$kver/kernel/drivers/"{gpu,media,net/wireless,sound,infiniband,staging,iio,hid,usb,bluetooth,input/touchscreen}
rm -rf "$root/lib/modules/$kver/kernel/sound"
chroot "$root" depmod "$kver"
mkdir -p "$root/share"

log "making ext4 root"
size_mb=$(($(du -sm "$root" | cut -f1) + 256))
mke2fs -q -t ext4 -L gresec-root -E root_owner=0:0 -d "$root" "$tmp/rootfs.ext4" "${size_mb}M" >"$tmp/mke2fs.log" 2>&1 ||
	{ cat "$tmp/mke2fs.log" >&2; die "mke2fs failed"; }

{
	echo "key $key"
	echo "suite $suite"
	echo "mirror $mirror"
	echo "kernel $kver"
	echo "built $(date -u +%FT%TZ) in $((SECONDS - start))s"
	echo "packages:"
	cat "$tmp/manifest.pkgs" "$tmp/manifest.unpacked"
} >"$tmp/manifest.staging"
rm -rf "$root" "$tmp/manifest.pkgs" "$tmp/manifest.unpacked"
mv "$tmp/manifest.staging" "$tmp/manifest.txt"

# Publish atomically: the directory appears complete or not at all.
mv "$tmp" "$out"
trap - EXIT
chmod 755 "$out"
log "built $out in $((SECONDS - start))s ($(du -sh "$out" | cut -f1))"

# Keep the newest few older images; they cost disk, not correctness.
keep=${GRESEC_INTEROP_KEEP:-1}
for old in $(ls -1dt "$cache"/image-* 2>/dev/null | grep -vx "$out" | tail -n +$((keep + 1))); do
	log "removing old image $old"
	rm -rf "$old"
done

echo "IMAGE_DIR=$out"
