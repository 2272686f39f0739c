package main

import (
	"fmt"
	"io"

	"github.com/gresec/gresec/ikev1"
)

// printIKEv1 shows the IKEv1 SAs the way IOS's `show crypto isakmp sa`
// and `show crypto ipsec sa` do: dst, src, state (MM_NO_STATE ...
// QM_IDLE), then each ESP SA pair with its settings and remaining life.
func printIKEv1(w io.Writer, s *ikev1.Status) {
	if s == nil {
		return
	}
	fmt.Fprintf(w, "\n   isakmp sa (IKEv1):\n      %-15s %-15s %-12s %-9s %-36s %s\n", "dst", "src", "state", "role", "cookies", "suite")
	for _, p := range s.Phase1 {
		role := "responder"
		if p.Initiator {
			role = "initiator"
		}
		fmt.Fprintf(w, "      %-15s %-15s %-12s %-9s %-36s %s", p.Dst, p.Src, p.State, role, p.Cookies, p.Suite)
		if p.ExpiresSeconds > 0 {
			fmt.Fprintf(w, "  peer %s  expires in %s", p.PeerID, secs(p.ExpiresSeconds))
		}
		fmt.Fprintln(w)
	}
	if len(s.Phase1) == 0 {
		fmt.Fprintln(w, "      (none)")
	}
	fmt.Fprintln(w, "   ipsec sa (IKEv1):")
	for _, c := range s.Phase2 {
		fmt.Fprintf(w, "      spi in %s out %s  transform %s  in use settings {%s}", c.SPIIn, c.SPIOut, c.Transform, c.Mode)
		if c.PFS != "" {
			fmt.Fprintf(w, "  pfs %s", c.PFS)
		}
		fmt.Fprintf(w, "  remaining key lifetime %s", secs(c.ExpiresSeconds))
		if c.LifetimeKB > 0 {
			fmt.Fprintf(w, " / %d KB", c.LifetimeKB)
		}
		fmt.Fprintln(w)
	}
	if len(s.Phase2) == 0 {
		fmt.Fprintln(w, "      (none)")
	}
	if n := s.NAT; n != nil {
		fmt.Fprintf(w, "      nat-t: %s  udp_encap %s  peer ike port %d  nat: %s  %d keepalives sent, %d rebinds followed\n",
			espPath(n.Encap), n.Mode, n.RemotePort, natWhere(n.NATHere, n.NATThere, n.Faked), n.Keepalives, n.Rebinds)
	}
	fmt.Fprintf(w, "      ike messages: %d received\n", s.Received)
	if len(s.Drops) > 0 {
		fmt.Fprintln(w, "      ike drops:")
		printDrops(w, "        ", s.Drops)
	}
}
