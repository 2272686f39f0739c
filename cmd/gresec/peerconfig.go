package main

import (
	"fmt"
	"os"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/peerconf"
)

func cmdPeerConfig(args []string) error {
	fs := newFlags("peer-config", "-c FILE --for strongswan|openbsd|cisco-ios|cisco-ios-ikev1|linux|freebsd|freebsd-racoon [--include-secret]")
	path := fs.String("c", "/etc/gresec/gresec.toml", "config `file`")
	peer := fs.String("for", "", "the other end: strongswan, openbsd, cisco-ios, cisco-ios-ikev1, linux, freebsd or freebsd-racoon")
	secret := fs.Bool("include-secret", false, "print pre-shared and static keys instead of placeholders")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *peer == "" {
		return fmt.Errorf("--for is required: strongswan, openbsd, cisco-ios, cisco-ios-ikev1, linux, freebsd or freebsd-racoon")
	}
	p, err := peerconf.ParsePeer(*peer)
	if err != nil {
		return err
	}
	c, err := config.Load(*path)
	if err != nil {
		return err
	}
	out, err := peerconf.Generate(c, peerconf.Options{Peer: p, IncludeSecret: *secret})
	if err != nil {
		return err
	}
	_, err = out.WriteTo(os.Stdout)
	return err
}
