//go:build linux

// Command udpencapsock holds open a UDP socket with UDP_ENCAP_ESPINUDP set
// on port 4500 (or the first argument), which the Linux kernel needs before
// its XFRM states with `encap espinudp` receive anything: the kernel's
// xfrm does not open that socket itself, an IKE daemon (strongSwan, iked)
// does. For static-key interop tests in the qemu guest, which has no IKE
// daemon running and no python. It prints "ready" once the socket is set,
// then sleeps until killed.
package main

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

func main() {
	port := 4500
	if len(os.Args) > 1 {
		p, err := strconv.Atoi(os.Args[1])
		if err != nil || p < 1 || p > 65535 {
			fmt.Fprintln(os.Stderr, "usage: udpencapsock [port]")
			os.Exit(2)
		}
		port = p
	}
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		fd, err := unix.Socket(family, unix.SOCK_DGRAM, unix.IPPROTO_UDP)
		if err != nil {
			fail(err)
		}
		var sa unix.Sockaddr = &unix.SockaddrInet4{Port: port}
		if family == unix.AF_INET6 {
			// IPv6 only: the IPv4 socket holds the port for IPv4.
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
				fail(err)
			}
			sa = &unix.SockaddrInet6{Port: port}
		}
		if err := unix.Bind(fd, sa); err != nil {
			fail(err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_ENCAP, unix.UDP_ENCAP_ESPINUDP); err != nil {
			fail(err)
		}
	}
	fmt.Println("ready")
	for {
		unix.Pause() // the sockets stay open until a signal ends the process
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "udpencapsock:", err)
	os.Exit(1)
}
