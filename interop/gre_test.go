package interop

import "testing"

// TestScenario4PlainGRE: gresec with keying = "none" against the Linux
// kernel's own GRE device (ip_gre). Both must agree on the 4-byte GRE
// header, the protocol types for IPv4 and IPv6 inner packets and the MTU.
func TestScenario4PlainGRE(t *testing.T) {
	l := newLab(t)
	// 1500 - 20 (IPv4) - 4 (GRE), what Linux gives its own gre1.
	const mtu = 1476
	st := l.startGresec("none", nil)
	l.guestGRE(mtu)
	if st.Protocol != "gre" {
		t.Fatalf("gresec status protocol %q, want gre", st.Protocol)
	}
	if st.MTU != mtu {
		t.Fatalf("gresec MTU %d for plain GRE over IPv4/1500, want %d", st.MTU, mtu)
	}

	l.pingAll(st.MTU)

	// Everything crossed as plain GRE (protocol 47); nothing as ESP.
	greOut, greIn := l.wire("gre_out"), l.wire("gre_in")
	if min := uint64(8 * pingCount); greOut < min || greIn < min {
		t.Errorf("host sent %d and received %d GRE packets, want >= %d each", greOut, greIn, min)
	}
	if n := l.wire("esp_out") + l.wire("esp_in"); n != 0 {
		t.Errorf("%d ESP packets on a keying = none tunnel", n)
	}
	// The guest's GRE device saw the same traffic: it decapsulated what
	// gresec sent (rx) and encapsulated the replies and its own pings (tx).
	rx, tx := l.guestLinkCounters("gre1")
	if min := uint64(8 * pingCount); rx < min || tx < min {
		t.Errorf("guest gre1 rx %d tx %d packets, want >= %d each", rx, tx, min)
	}
	if st := l.mustStatus(); st.Inner.RxPackets < 8*pingCount || st.Inner.TxPackets < 8*pingCount {
		t.Errorf("gresec inner counters rx %d tx %d, want >= %d each", st.Inner.RxPackets, st.Inner.TxPackets, 8*pingCount)
	}
}
