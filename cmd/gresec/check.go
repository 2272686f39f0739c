package main

import (
	"fmt"
	"io"
	"os"

	"github.com/gresec/gresec/config"
)

func cmdCheck(args []string) error {
	fs := newFlags("check", "[-c FILE]... | -d DIR")
	var files fileList
	fs.Var(&files, "c", "config `file` (default /etc/gresec/gresec.toml); repeat to check several as one daemon's")
	dir := fs.String("d", "", "`directory` of tunnels, checked as one daemon's set")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *dir != "" && len(files) > 0:
		return fmt.Errorf("-c and -d exclude each other")
	case *dir != "":
		return checkSet(tunnelSet{dir: *dir})
	case len(files) > 1:
		return checkSet(tunnelSet{files: files})
	case len(files) == 0:
		files = fileList{"/etc/gresec/gresec.toml"}
	}
	path := &files[0]
	c, err := config.Load(*path)
	if err != nil {
		return err
	}
	mtuNote := "configured"
	if c.MTUComputed {
		mtuNote = fmt.Sprintf("computed: underlay %d - overhead %d", c.UnderlayMTU, c.Overhead())
	}
	fmt.Printf("%s: ok\n", c.Path)
	fmt.Printf("interface      %s\n", c.Interface)
	fmt.Printf("local          %s\n", c.Local)
	fmt.Printf("remote         %s\n", c.RemoteText())
	fmt.Printf("addresses      %v\n", c.Addresses)
	fmt.Printf("keying         %s\n", c.Keying)
	if c.Keying != config.KeyingNone {
		fmt.Printf("shape          %s (mode %s, encap %s)\n", c.Shape(), c.Mode, c.Encap)
	}
	fmt.Printf("mtu            %d (%s)\n", c.MTU, mtuNote)
	if c.MSSClamp {
		fmt.Printf("tcp mss clamp  %d (IPv4), %d (IPv6)\n", c.MSS4(), c.MSS6())
	} else {
		fmt.Printf("tcp mss clamp  off\n")
	}
	if c.GREKey != nil {
		fmt.Printf("gre key        %d\n", *c.GREKey)
	}
	if c.Keying == config.KeyingStatic {
		fmt.Printf("esp            %s (%s), %s mode, replay window %d\n", c.Static.Transform, c.Static.Transform.Description(), c.Mode, c.ReplayWindow)
		fmt.Printf("spi out / in   0x%08x / 0x%08x\n", c.Static.SPIOut, c.Static.SPIIn)
	}
	if c.Keying != config.KeyingNone {
		fmt.Printf("udp encap      %s\n", udpEncapNote(c))
	}
	if c.Keying.IKE() {
		printIKE(os.Stdout, c)
	}
	fmt.Printf("control socket %s\n", c.ControlSocket)
	return nil
}

// printIKE shows the [ike] settings in effect, defaults filled in, so
// that they can be set against the peer's (iked.conf, IOS, swanctl).
func printIKE(w io.Writer, c *config.Config) {
	k := &c.IKE
	role := "initiates and answers"
	if !k.Initiate {
		role = "answers only (initiate = false)"
	}
	id := func(text string, addr fmt.Stringer) string {
		if text == "" {
			return addr.String()
		}
		return text
	}
	psk := k.LocalPSKFile
	if k.RemotePSKFile != k.LocalPSKFile {
		psk = "local " + k.LocalPSKFile + ", remote " + k.RemotePSKFile
	}
	fmt.Fprintf(w, "ike            %s, %s\n", c.Keying, role)
	fmt.Fprintf(w, "identities     local %s, remote %s; psk %s\n", id(k.LocalIDText, c.Local), id(k.RemoteIDText, c.Remote), psk)
	fmt.Fprintf(w, "proposals      ike %v, esp %v\n", k.ProposalText, k.ESPProposalText)
	bytes := "no byte limit"
	if k.ChildLifetimeBytes > 0 {
		bytes = fmt.Sprintf("%d bytes", k.ChildLifetimeBytes)
	}
	fmt.Fprintf(w, "lifetimes      ike %s, child %s / %s; dpd %s\n", k.Lifetime, k.ChildLifetime, bytes, orOff(k.DPD.String(), k.DPD > 0))
	if c.Keying == config.KeyingIKEv2 {
		fmt.Fprintf(w, "fragmentation  %s\n", orOff(fmt.Sprintf("yes, fragments up to %d bytes", k.FragmentSize), k.Fragmentation))
	}
}

// udpEncapNote says how ESP travels, with what UDP adds to each packet.
func udpEncapNote(c *config.Config) string {
	switch {
	case c.ESPInUDP():
		return fmt.Sprintf("%s: ESP in UDP, port %d on both ends (+8 bytes UDP header in the overhead)", c.UDPEncap, c.UDPPort)
	case c.Keying.IKE() && c.UDPEncap == config.UDPEncapAlways:
		return fmt.Sprintf("%s: IKE and ESP in UDP 4500 (NAT detection faked; +8 bytes UDP header in the overhead), NAT keepalive %s", c.UDPEncap, c.NATKeepalive)
	case c.Keying.IKE() && c.UDPEncap == config.UDPEncapAuto:
		return fmt.Sprintf("%s: raw ESP (IP protocol 50); IKE and ESP in UDP 4500 when a NAT is detected (+8 bytes), NAT keepalive %s", c.UDPEncap, c.NATKeepalive)
	}
	return fmt.Sprintf("%s: raw ESP (IP protocol 50)", c.UDPEncap)
}

// checkSet validates a daemon's set of tunnels, conflicts included, and
// lists them one line each.
func checkSet(set tunnelSet) error {
	d, cs, err := set.load()
	if err != nil {
		return err
	}
	from := d.Path
	if from == "" {
		from = "defaults"
	}
	fmt.Printf("%d tunnels: ok\n", len(cs))
	fmt.Printf("daemon         control %s, log %s, metrics %s (%s)\n", d.ControlSocket, d.LogLevel, orOff(d.MetricsListen.String(), d.MetricsListen.IsValid()), from)
	for _, c := range cs {
		fmt.Printf("%-14s %s  %s -> %s  %s  mtu %d  %v\n", tunnelName(c.Path), c.Interface, c.Local, c.RemoteText(), c.Keying, c.MTU, c.Addresses)
	}
	return nil
}

func orOff(s string, on bool) string {
	if on {
		return s
	}
	return "off"
}
