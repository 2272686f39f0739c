#!/bin/bash
# PID 1 of the interop guest (kernel command line init=/sbin/gresec-init).
#
# It mounts the basics, loads the modules the scenarios need, configures eth0
# from the kernel command line, mounts the host's 9p share at /share and then
# runs the agent: every <id>.cmd file the host drops there runs with bash
# under a timeout; its combined output goes to <id>.out and its exit code to
# <id>.rc (each written under a temporary name and renamed, so the host never
# reads half a file; .rc is renamed last).
#
# Command line parameters (all optional):
#   gresec.addr=<prefix>[,<prefix>...]   addresses for eth0
#   gresec.share=<tag>                   9p mount tag (default gresec)
#   gresec.timeout=<seconds>             default per-command timeout (default 60)
#   gresec.poll=<seconds>                agent poll interval (default 0.05)

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LC_ALL=C TERM=dumb

log() { echo "gresec-init: $*" >/dev/console; }

# The initramfs moves /proc, /sys, /dev and /run over to the root; mount
# only what is missing.
mnt() { mountpoint -q "$3" || mount -t "$1" "$2" "$3"; }
mnt proc proc /proc
mnt sysfs sys /sys
mnt devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mnt devpts devpts /dev/pts
mnt tmpfs tmpfs /dev/shm
mnt tmpfs tmpfs /run
mnt tmpfs tmpfs /tmp
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -o remount,rw /
mkdir -p /run/lock
hostname gresec-guest

addrs= tag=gresec timeout=60 poll=0.05
for arg in $(cat /proc/cmdline); do
	case $arg in
	gresec.addr=*) addrs=${arg#gresec.addr=} ;;
	gresec.share=*) tag=${arg#gresec.share=} ;;
	gresec.timeout=*) timeout=${arg#gresec.timeout=} ;;
	gresec.poll=*) poll=${arg#gresec.poll=} ;;
	esac
done

# Missing modules are not fatal here: the scenario that needs one fails with
# the kernel's own error, which says more than this script could.
for m in virtio_net 9pnet_virtio 9p af_packet esp4 esp6 xfrm_user xfrm_algo af_key \
	ip_gre ip6_gre gre ip_tunnel tunnel4 xfrm4_tunnel gcm ghash_generic aesni_intel aes_generic \
	authenc echainiv seqiv cbc ctr hmac sha1_generic sha256_generic sha512_generic \
	sha1_ssse3 sha256_ssse3 sha512_ssse3 chacha20poly1305 chacha_generic chacha_x86_64 \
	poly1305_generic poly1305_x86_64; do
	modprobe -q "$m" 2>/dev/null
done

ip link set lo up
ip link set eth0 up
for a in ${addrs//,/ }; do
	case $a in
	*:*) ip -6 addr add "$a" dev eth0 nodad ;;
	*) ip addr add "$a" dev eth0 ;;
	esac
done

mkdir -p /share
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 "$tag" /share; then
	log "cannot mount 9p share $tag; powering off"
	echo o >/proc/sysrq-trigger
	sleep 10
fi

log "ready: $(uname -r)"
uname -r >/share/.ready.tmp && mv /share/.ready.tmp /share/ready

# Orphans of backgrounded commands are re-parented to PID 1; bash reaps them
# whenever it waits, so they do not pile up as zombies for long.
shopt -s nullglob
while :; do
	for f in /share/*.cmd; do
		id=${f%.cmd}
		t=$timeout
		[ -f "$id.timeout" ] && t=$(cat "$id.timeout")
		(cd /root && exec timeout -k 2 "$t" bash "$f") </dev/null >"$id.out.tmp" 2>&1
		rc=$?
		mv "$id.out.tmp" "$id.out"
		echo "$rc" >"$id.rc.tmp"
		rm -f "$f" "$id.timeout"
		mv "$id.rc.tmp" "$id.rc"
	done
	sleep "$poll"
done
