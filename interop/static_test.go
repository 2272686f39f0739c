package interop

import (
	"fmt"
	"strings"
	"testing"
)

// TestScenario1StaticKeys: gresec with keying = "static" against the Linux
// kernel's GRE protected by its own XFRM ESP (transport mode,
// rfc4106(gcm(aes)), 36-byte keys), with the SPIs and keys mirrored. The
// guest's inbound policy requires ESP for GRE, so a plaintext GRE packet from
// gresec would be dropped rather than answered: replies prove encryption
// the kernel accepts, and the kernel's SA counters prove which SAs carried it.
func TestScenario1StaticKeys(t *testing.T) {
	l := newLab(t)
	keys := &staticKeys{spiOut: 0x1001, spiIn: 0x1002, keyOut: newKey(t), keyIn: newKey(t)}
	// Order matters for exact counters: the guest's SAs and policies exist
	// before gresec starts, and gresec runs before the guest's gre1 comes
	// up, so not one packet (not even the IPv6 router solicitation either
	// side sends when its interface comes up) crosses outside the SAs or
	// reaches a peer that is not listening yet.
	l.guestESP(keys, keys.keyIn)
	g, h := guestUnder[0].Addr(), hostUnder[0].Addr()
	// DESIGN.md §2: 1500 - 20 - 8 - 8 - 16 - 2 - 4.
	const mtu = 1442
	st := l.startGresec("static", keys)
	l.guestGRE(mtu)
	if st.Protocol != "esp" {
		t.Fatalf("gresec status protocol %q, want esp", st.Protocol)
	}
	if st.MTU != mtu {
		t.Fatalf("gresec MTU %d for ESP over IPv4/1500, want %d", st.MTU, mtu)
	}

	l.pingAll(st.MTU)

	// On the wire: ESP both ways, never a bare GRE packet.
	const min = 8 * pingCount
	if out, in := l.wire("esp_out"), l.wire("esp_in"); out < min || in < min {
		t.Errorf("host sent %d and received %d ESP packets, want >= %d each", out, in, min)
	}
	if n := l.wire("gre_out") + l.wire("gre_in"); n != 0 {
		t.Errorf("%d plaintext GRE packets crossed a keying = static tunnel", n)
	}

	// The guest kernel's SAs moved: its inbound SA (gresec's spi_out)
	// decrypted what gresec sent, with no replay or ICV failures, and its
	// outbound SA (gresec's spi_in) carried the replies.
	sas := l.guestSAs()
	in, ok := sas[keys.spiOut]
	if !ok || in.src != h.String() || in.dst != g.String() {
		t.Fatalf("guest has no inbound SA 0x%x %s -> %s: %+v", keys.spiOut, h, g, sas)
	}
	out, ok := sas[keys.spiIn]
	if !ok || out.src != g.String() || out.dst != h.String() {
		t.Fatalf("guest has no outbound SA 0x%x %s -> %s: %+v", keys.spiIn, g, h, sas)
	}
	if in.packets < min || out.packets < min {
		t.Errorf("guest SA packet counters: inbound 0x%x %d, outbound 0x%x %d; want >= %d each",
			keys.spiOut, in.packets, keys.spiIn, out.packets, min)
	}
	if in.replay != 0 || in.integrty != 0 {
		t.Errorf("guest inbound SA dropped %d replays and %d ICV failures", in.replay, in.integrty)
	}
	if stats := l.guestRun("cat /proc/net/xfrm_stat"); !allZero(stats) {
		t.Errorf("guest XFRM error counters moved:\n%s", stats)
	}

	// gresec's view mirrors the guest's: its outbound SA sent at least as
	// many packets as the guest decrypted, and its inbound SA accepted the
	// guest's without drops.
	st = l.mustStatus()
	if st.Outbound == nil || st.Outbound.Packets < in.packets {
		t.Errorf("gresec outbound SA %+v, want >= %d packets (what the guest decrypted)", st.Outbound, in.packets)
	}
	var accepted uint64
	for _, sa := range st.Inbound {
		accepted += sa.Packets
		for why, n := range sa.Drops {
			if n != 0 {
				t.Errorf("gresec inbound SA %s dropped %d packets (%s)", sa.SPI, n, why)
			}
		}
	}
	if accepted < out.packets {
		t.Errorf("gresec inbound SAs accepted %d packets, the guest sent %d", accepted, out.packets)
	}
}

// allZero reports whether every counter in /proc/net/xfrm_stat is 0.
func allZero(stats string) bool {
	for _, line := range strings.Split(strings.TrimSpace(stats), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[1] != "0" {
			return false
		}
	}
	return true
}

// TestScenario1WrongKeyDropped: the same setup, except that the guest's
// outbound SA uses a key gresec does not have. gresec must authenticate the
// kernel's packets before delivering them: nothing gets through and every
// packet counts as an ICV (auth) drop. This is the check that the passing
// scenario is not passing for the wrong reason.
func TestScenario1WrongKeyDropped(t *testing.T) {
	l := newLab(t)
	keys := &staticKeys{spiOut: 0x2001, spiIn: 0x2002, keyOut: newKey(t), keyIn: newKey(t)}
	l.guestESP(keys, newKey(t))
	l.startGresec("static", keys)
	l.guestGRE(1442)

	out, _ := l.g.Run("ping -c 3 -i 0.2 -W 2 " + hostInner4.Addr().String())
	if m := pingStats.FindStringSubmatch(out); m == nil || m[1] != "3" || m[2] != "0" {
		t.Fatalf("guest pinged across with a key gresec does not have; want 3 sent, 0 received:\n%s", out)
	}
	sas := l.guestSAs()
	sent := sas[keys.spiIn].packets
	if sent < 3 {
		t.Fatalf("guest outbound SA carried %d packets, want >= 3", sent)
	}
	st := l.mustStatus()
	if st.Inner.RxPackets != 0 {
		t.Errorf("gresec delivered %d inner packets sealed with the wrong key", st.Inner.RxPackets)
	}
	var auth uint64
	for _, sa := range st.Inbound {
		auth += sa.Drops["auth"]
	}
	if auth < sent {
		t.Errorf("gresec counted %d auth drops for %d packets under the wrong key (inbound %+v)", auth, sent, st.Inbound)
	}
}

// guestESP installs the guest's SAs, mirroring gresec's keys (the guest's
// inbound SA is gresec's outbound one), and policies that require ESP for
// all GRE between the two underlay addresses. outKey is the key of the
// guest's outbound SA: keys.keyIn, unless a test wants a mismatch.
func (l *lab) guestESP(keys *staticKeys, outKey string) {
	l.t.Helper()
	g, h := guestUnder[0].Addr(), hostUnder[0].Addr()
	l.guestRun(fmt.Sprintf(`set -e
ip xfrm state add src %[2]s dst %[1]s proto esp spi 0x%[3]x mode transport replay-window 32 aead 'rfc4106(gcm(aes))' %[4]s 128
ip xfrm state add src %[1]s dst %[2]s proto esp spi 0x%[5]x mode transport aead 'rfc4106(gcm(aes))' %[6]s 128
ip xfrm policy add src %[1]s dst %[2]s proto gre dir out tmpl src %[1]s dst %[2]s proto esp mode transport
ip xfrm policy add src %[2]s dst %[1]s proto gre dir in tmpl src %[2]s dst %[1]s proto esp mode transport`,
		g, h, keys.spiOut, keys.keyOut, keys.spiIn, outKey))
}
