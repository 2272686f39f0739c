package interop

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nftUDPCounters counts ESP in UDP (4500 to 4500) crossing the host
// namespace's input and output hooks, beside nftCounters' raw ESP.
const nftUDPCounters = `table inet gresec_iop_udp {
	counter udp_in {}
	counter udp_out {}
	chain in {
		type filter hook input priority 0; policy accept;
		udp sport 4500 udp dport 4500 counter name udp_in
	}
	chain out {
		type filter hook output priority 0; policy accept;
		udp sport 4500 udp dport 4500 counter name udp_out
	}
}
`

// TestScenario1StaticKeysESPInUDP: gresec with static keys and udp_encap =
// "always" against the guest kernel's GRE over XFRM ESP with `encap
// espinudp 4500 4500 0.0.0.0` on both SAs (RFC 3948). The guest kernel
// only decapsulates ESP in UDP arriving on a socket with UDP_ENCAP set,
// which an IKE daemon would open: a small helper (udpencapsock) holds one.
// Pings both ways at the smallest and the largest size the 8-byte smaller
// MTU allows; on the wire only UDP 4500 to 4500, no raw ESP and no bare
// GRE; the guest's SAs carried the traffic without replay, ICV or XFRM
// errors, and gresec's SAs agree.
func TestScenario1StaticKeysESPInUDP(t *testing.T) {
	l := newLab(t)
	helper := filepath.Join(l.g.Share(), "udpencapsock")
	build := exec.Command("go", "build", "-o", helper, "./udpencapsock")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building udpencapsock: %v\n%s", err, out)
	}
	l.guestRun("(/share/udpencapsock >/tmp/udpencapsock.log 2>&1 &)")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(l.guestRun("cat /tmp/udpencapsock.log"), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("udpencapsock not ready in the guest: %s", l.guestRun("cat /tmp/udpencapsock.log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.hostRunInput(nftUDPCounters, "nft", "-f", "-")

	keys := &staticKeys{spiOut: 0x3001, spiIn: 0x3002, keyOut: newKey(t), keyIn: newKey(t)}
	const encap = "encap espinudp 4500 4500 0.0.0.0"
	gcm := aead("rfc4106(gcm(aes))")
	l.guestESPWith(keys, gcm(keys.keyOut, ""), gcm(keys.keyIn, ""), "replay-window 32 "+encap, encap)
	// DESIGN.md §2's 1442, less the 8-byte UDP header.
	const mtu = 1434
	l.ipsecExtra = "udp_encap = \"always\"\n"
	st := l.startGresec("static", keys)
	l.guestGRE(mtu)
	if st.Protocol != "esp" || st.MTU != mtu {
		t.Fatalf("gresec status: protocol %q, MTU %d; want esp, %d", st.Protocol, st.MTU, mtu)
	}

	l.pingAll(st.MTU)

	const min = 8 * pingCount
	udp := func(name string) uint64 {
		out := l.hostRun("nft", "list", "counter", "inet", "gresec_iop_udp", name)
		m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no packet count in %q", out)
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		return n
	}
	if out, in := udp("udp_out"), udp("udp_in"); out < min || in < min {
		t.Errorf("host sent %d and received %d UDP 4500->4500 packets, want >= %d each", out, in, min)
	}
	if n := l.wire("esp_out") + l.wire("esp_in"); n != 0 {
		t.Errorf("%d raw ESP packets crossed an ESP-in-UDP tunnel", n)
	}
	if n := l.wire("gre_out") + l.wire("gre_in"); n != 0 {
		t.Errorf("%d plaintext GRE packets crossed", n)
	}
	sas := l.guestSAs()
	in, out := sas[keys.spiOut], sas[keys.spiIn]
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
	if xs := l.guestRun("ip xfrm state"); strings.Count(xs, "encap type espinudp sport 4500 dport 4500") != 2 {
		t.Errorf("guest SAs are not both ESP in UDP 4500:\n%s", redactKeys(xs))
	}
	gs := l.mustStatus()
	if gs.Outbound == nil || gs.Outbound.Packets < in.packets {
		t.Errorf("gresec outbound SA %+v, want >= %d packets (what the guest decrypted)", gs.Outbound, in.packets)
	}
	var accepted uint64
	for _, sa := range gs.Inbound {
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
