package main

import (
	"net"
	"os"
	"strings"
)

// sdNotify tells systemd (Type=notify) about the daemon's state; it does
// nothing when not started by systemd. The protocol is one datagram to
// $NOTIFY_SOCKET (sd_notify(3)); a leading '@' names an abstract socket.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}
