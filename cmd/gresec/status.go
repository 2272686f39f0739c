package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/control"
	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/tunnel"
)

func cmdStatus(args []string) error {
	fs := newFlags("status", "[-c FILE | -d DIR | -s SOCKET] [-i NAME] [--json]")
	path := fs.String("c", "", "config `file` of the instance (finds its control socket)")
	dir := fs.String("d", "", "tunnel `directory` of a daemon of many tunnels (finds its control socket)")
	sock := fs.String("s", "", "control `socket` path")
	iface := fs.String("i", "", "one tunnel: its `name` or interface (alone: the socket /run/gresec/NAME.sock, else the daemon's)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	socket, err := statusSocket(*path, *dir, *sock, *iface)
	if err != nil {
		return err
	}
	raw, err := control.Query(socket, "status")
	if err != nil {
		return err
	}
	var probe struct {
		Tunnels json.RawMessage `json:"tunnels"`
	}
	if json.Unmarshal(raw, &probe) == nil && probe.Tunnels != nil {
		return printDaemon(os.Stdout, raw, *iface, *asJSON)
	}
	if *asJSON {
		return printJSON(os.Stdout, raw)
	}
	var st tunnel.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("unexpected answer from %s: %w", socket, err)
	}
	printStatus(os.Stdout, &st)
	return nil
}

// statusSocket is socketFor, with a daemon of many tunnels as the fallback:
// a tunnel of a daemon has no socket of its own.
func statusSocket(path, dir, sock, iface string) (string, error) {
	if dir != "" {
		d, err := config.LoadDaemon(filepath.Join(dir, config.DaemonFile))
		return d.ControlSocket, err
	}
	if path != "" || sock != "" {
		return socketFor(path, sock, iface)
	}
	name := iface
	if name == "" {
		name = "gre0"
	}
	own, _ := socketFor("", "", name)
	if _, err := os.Stat(own); err == nil {
		return own, nil
	}
	if _, err := os.Stat(config.DefaultDaemonSocket); err == nil {
		return config.DefaultDaemonSocket, nil
	}
	return own, nil
}

func printJSON(w io.Writer, raw []byte) error {
	var out bytes.Buffer
	json.Indent(&out, raw, "", "  ")
	out.WriteByte('\n')
	_, err := out.WriteTo(w)
	return err
}

// printDaemon prints a daemon's tunnels one line each, as `swanctl
// --list-sas` does, or one of them in full (-i).
func printDaemon(w io.Writer, raw []byte, name string, asJSON bool) error {
	var ds tunnel.DaemonStatus
	if err := json.Unmarshal(raw, &ds); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	if name != "" {
		for i := range ds.Tunnels {
			st := &ds.Tunnels[i]
			if st.Name == name || st.Interface == name {
				if asJSON {
					b, _ := json.Marshal(st)
					return printJSON(w, b)
				}
				fmt.Fprintf(w, "tunnel: %s\n", st.Name)
				printStatus(w, st)
				return nil
			}
		}
		return fmt.Errorf("no tunnel %q in this daemon", name)
	}
	if asJSON {
		return printJSON(w, raw)
	}
	fmt.Fprintf(w, "%d tunnels  (shared sockets dropped: esp malformed %d, esp unknown spi %d, ike from no peer %d, ike send buffer full %d)\n",
		len(ds.Tunnels), ds.Malformed, ds.UnknownSPI, ds.UnroutedIKE, ds.IKESendFull)
	for i := range ds.Tunnels {
		fmt.Fprintln(w, tunnelLine(&ds.Tunnels[i]))
	}
	return nil
}

// tunnelLine is one tunnel in one line: name, interface, addresses, state
// (the IKE SA's, or whether an outbound SA is installed), SPIs, traffic.
func tunnelLine(st *tunnel.Status) string {
	state := "up"
	switch {
	case st.IKE != nil:
		state = st.IKE.State.String()
	case st.Protocol == "esp" && st.Outbound == nil:
		state = "no-sa"
	}
	spis := "-"
	if st.Outbound != nil && len(st.Inbound) > 0 {
		spis = st.Inbound[0].SPI + "_i " + st.Outbound.SPI + "_o"
	}
	var drops uint64
	for _, n := range st.Drops {
		drops += n
	}
	return fmt.Sprintf("%-12s %-10s %s === %s  %s %s  %s  rx %d/%dB tx %d/%dB drops %d  up %s",
		st.Name, st.Interface, st.Local, st.Remote, st.Keying, state, spis,
		st.Inner.RxPackets, st.Inner.RxBytes, st.Inner.TxPackets, st.Inner.TxBytes, drops, secs(st.UptimeSeconds))
}

// socketFor finds an instance's control socket from -c, -s or -i.
func socketFor(path, sock, iface string) (string, error) {
	switch {
	case sock != "":
		return sock, nil
	case path != "":
		// Parse, not Load: only the socket path is needed, not the keys.
		data, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("config: %w", err)
		}
		cfg, err := config.Parse(path, data)
		if err != nil {
			return "", err
		}
		return cfg.ControlSocket, nil
	}
	return "/run/gresec/" + iface + ".sock", nil
}

// printStatus lays the state out the way `show crypto ipsec sa` does: the
// interface first, then each SA with its counters, then every drop reason.
func printStatus(w io.Writer, st *tunnel.Status) {
	fmt.Fprintf(w, "interface: %s  mtu %d  keying %s  up %s\n", st.Interface, st.MTU, st.Keying,
		(time.Duration(st.UptimeSeconds) * time.Second).String())
	fmt.Fprintf(w, "   local %s  remote %s  protocol %s\n", st.Local, st.Remote, st.Protocol)
	if u := st.UDPEncap; u != nil && u.RemotePort == 0 {
		// IKE's NAT-T socket while ESP is raw: no peer port to show yet.
		fmt.Fprintf(w, "   udp %d: open for NAT traversal, esp not in udp (raw)  nat keepalives %d  ike %d (dropped %d)  dropped %d\n",
			u.LocalPort, u.Keepalives, u.IKE, u.IKEDropped, u.Dropped)
	} else if u != nil {
		fmt.Fprintf(w, "   esp in udp: port %d -> %d  gso %s (%d sends)  gro %s (%d receives)  nat keepalives %d  ike %d (dropped %d)  dropped %d\n",
			u.LocalPort, u.RemotePort, onOff(u.GSO), u.GSOSends, onOff(u.GRO), u.GROReceives, u.Keepalives, u.IKE, u.IKEDropped, u.Dropped)
	}
	if st.Mode != "" && st.Protocol == "esp" {
		fmt.Fprintf(w, "   esp %s mode  encap %s\n", st.Mode, st.Encap)
	}
	if st.MSSClamp {
		fmt.Fprintf(w, "   tcp mss clamp %d (IPv4) / %d (IPv6)\n", st.MSS4, st.MSS6)
	}
	fmt.Fprintf(w, "   inner: %d pkts / %d bytes sent, %d pkts / %d bytes received\n",
		st.Inner.TxPackets, st.Inner.TxBytes, st.Inner.RxPackets, st.Inner.RxBytes)
	if ka := st.Keepalive; ka != nil {
		// IOS's "line protocol is up/down" and "Keepalive set (10 sec), retries 3".
		if ka.State == "off" {
			fmt.Fprintf(w, "   keepalive: off  (%d of the peer's sent back)\n", ka.Reflected)
		} else {
			fmt.Fprintf(w, "   keepalive: line protocol %s  every %s, retries %d  unanswered %d  sent %d  came back %d  downs %d  peer's sent back %d\n",
				ka.State, secs(ka.IntervalSeconds), ka.Retries, ka.Unanswered, ka.Sent, ka.Replied, ka.Downs, ka.Reflected)
		}
	}
	if k := st.IKE; k != nil {
		fmt.Fprintf(w, "\n   ike sa: %s  spi_i %s  spi_r %s  suite %s  age %s", k.State, k.SPIi, k.SPIr, k.Suite, secs(k.AgeSeconds))
		if k.RekeyInSeconds > 0 {
			fmt.Fprintf(w, "  rekey in %s", secs(k.RekeyInSeconds))
		}
		fmt.Fprintf(w, "  children %d\n", k.Children)
		printNAT(w, &k.NAT)
		for _, c := range k.ChildSAs {
			fmt.Fprintf(w, "      child sa: spi in %s out %s  %s  age %s", c.SPIIn, c.SPIOut, c.Transform, secs(c.AgeSeconds))
			if c.RekeyInSeconds > 0 || c.LifetimeBytes > 0 {
				// IOS's "remaining key lifetime (k/sec)".
				fmt.Fprintf(w, "  remaining lifetime (k/sec): (%d/%d)", c.BytesLeft/1024, c.RekeyInSeconds)
			}
			fmt.Fprintln(w)
		}
		n := k.Counters
		fmt.Fprintf(w, "      ike messages: %d received, %d sent, %d retransmits, %d dropped, %d auth failures, %d rekeys, %d dpd failures, %d invalid syntax\n",
			n.Received, n.Sent, n.Retransmits, n.Dropped, n.AuthFailures, n.Rekeys, n.DPDFailures, n.InvalidSyntax)
		if n.FragmentsSent+n.FragmentsReceived > 0 {
			fmt.Fprintf(w, "      ike fragments (RFC 7383): %d sent, %d received, %d messages reassembled\n",
				n.FragmentsSent, n.FragmentsReceived, n.FragmentsReassembled)
		}
		fmt.Fprintf(w, "      nat-t: %d keepalives sent, %d rebinds followed\n", n.NATKeepalives, n.NATRebinds)
		if n.BadTransitions > 0 {
			fmt.Fprintf(w, "      BUG: %d invalid SA state transitions (see the log)\n", n.BadTransitions)
		}
		if n.Dropped > 0 {
			nonzero := map[string]uint64{}
			for r, c := range n.Drops {
				if c > 0 {
					nonzero[r] = c
				}
			}
			fmt.Fprintln(w, "      ike drops:")
			printDrops(w, "        ", nonzero)
		}
		printExchanges(w, k.Exchanges)
		if k.HalfOpen > 0 {
			fmt.Fprintf(w, "      half-open IKE SAs: %d\n", k.HalfOpen)
		}
		if k.LastError != "" {
			fmt.Fprintf(w, "      last error: %s\n", k.LastError)
		}
	}
	printIKEv1(w, st.IKEv1)
	if st.Outbound != nil {
		fmt.Fprintf(w, "\n   outbound esp sa: spi %s  transform %s\n", st.Outbound.SPI, st.Outbound.Transform)
		fmt.Fprintf(w, "      #pkts encrypt: %d  #bytes: %d  last seq: %d\n", st.Outbound.Packets, st.Outbound.Bytes, st.Outbound.Sequence)
	}
	for _, sa := range st.Inbound {
		fmt.Fprintf(w, "\n   inbound esp sa: spi %s  transform %s  replay window %d\n", sa.SPI, sa.Transform, sa.ReplayWindow)
		fmt.Fprintf(w, "      #pkts decrypt: %d  #bytes: %d  highest seq: %d\n", sa.Packets, sa.Bytes, sa.Sequence)
		printDrops(w, "      ", sa.Drops)
	}
	for _, sa := range st.Draining {
		fmt.Fprintf(w, "\n   retired inbound esp sa: spi %s  draining, removed in %s\n", sa.SPI, secs(sa.RemovedInSeconds))
		fmt.Fprintf(w, "      #pkts decrypt: %d  #bytes: %d  highest seq: %d\n", sa.Packets, sa.Bytes, sa.Sequence)
		printDrops(w, "      ", sa.Drops)
	}
	fmt.Fprintf(w, "\n   tunnel drops:\n")
	printDrops(w, "      ", st.Drops)
}

// printExchanges lists finished exchanges by who asked, as
// "IKE_AUTH ok 1": the requests we sent, then those we answered.
func printExchanges(w io.Writer, xs []tunnel.ExchangeCount) {
	for _, ours := range []bool{true, false} {
		counts := map[string]uint64{}
		for _, x := range xs {
			if x.Initiated == ours {
				counts[x.Exchange+" "+x.Result] += x.Count
			}
		}
		if len(counts) == 0 {
			continue
		}
		if ours {
			fmt.Fprintln(w, "      ike exchanges we initiated:")
		} else {
			fmt.Fprintln(w, "      ike exchanges the peer initiated:")
		}
		printDrops(w, "        ", counts)
	}
}

func printDrops(w io.Writer, indent string, drops map[string]uint64) {
	names := make([]string, 0, len(drops))
	for n := range drops {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, drops[n]))
	}
	// Three to a line keeps the list readable on a terminal.
	for len(parts) > 0 {
		k := min(3, len(parts))
		fmt.Fprintf(w, "%s%s\n", indent, strings.Join(parts[:k], ", "))
		parts = parts[k:]
	}
}

func secs(n int64) string { return (time.Duration(n) * time.Second).String() }

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// printNAT shows NAT traversal as strongSwan's "NAT-T" lines do: the
// encapsulation, both IKE ports and the side a NAT was found on.
func printNAT(w io.Writer, n *ike.NATStatus) {
	if n.Encap == "" {
		return
	}
	fmt.Fprintf(w, "      nat-t: %s  udp_encap %s  ike port %d -> %s  nat: %s\n",
		espPath(n.Encap), n.Mode, n.LocalPort, n.Peer, natWhere(n.NATHere, n.NATThere, n.Faked))
}

// natWhere says where NAT detection found a NAT, for both IKE versions.
func natWhere(here, there, faked bool) string {
	var where []string
	if here {
		where = append(where, "in front of us")
	}
	if there {
		where = append(where, "in front of the peer")
	}
	if faked {
		where = append(where, "faked (udp_encap always)")
	}
	if len(where) == 0 {
		return "none"
	}
	return strings.Join(where, ", ")
}

// espPath names how ESP travels for a NAT status's encap ("udp" or not).
func espPath(encap string) string {
	if encap == "udp" {
		return "esp in udp"
	}
	return "raw esp (ip protocol 50)"
}
