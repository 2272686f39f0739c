package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/swan"
)

// gresec's VTI against strongSwan's own userspace data plane: charon with
// the kernel-libipsec plugin (Debian libcharon-extra-plugins) moves ESP
// itself, through a TUN (ipsec0) it creates and routes in table 220, so
// the pings below cross a data plane nobody here wrote, both ways. It does
// tunnel mode only and always sends ESP in UDP 4500 (it fakes a NAT), so
// gresec runs mode = "tunnel", encap = "none" with NAT traversal.
//
// Site b's inner addresses sit on lo (198.19.0.1, 2001:db8:19::1: the
// peers of gresec's /31 and /127, so gresec reaches them on-link through
// its TUN). charon's selectors are those host addresses only: a selector
// of 0.0.0.0/0 on its side would route the underlay into ipsec0 too.

// libipsecConn is charon's route-based tunnel: its inner host addresses
// against gresec's, IPv4 and IPv6 in one child. kernel-libipsec enforces
// the policies (it drops what they do not cover) and routes by them.
func libipsecConn() swan.Conn {
	return swan.Conn{ChildExtra: "mode = tunnel\npolicies = yes\nlocal_ts = 198.19.0.1/32,2001:db8:19::1/128\nremote_ts = 198.19.0.0/32,2001:db8:19::/128"}
}

// startSwanLibipsec is startSwanShape with charon's data plane real:
// kernel-libipsec, routes installed, the inner addresses on b's lo.
// gresecExtra are more [ike] lines (udp_encap goes in [ipsec]).
func startSwanLibipsec(t *testing.T, gresecInitiates bool, udpEncap, gresecExtra string, conf swan.Conn, children ...string) *swanPair {
	t.Helper()
	if err := swan.InstallLibipsec(); err != nil {
		t.Fatalf("strongSwan kernel-libipsec: %v", err)
	}
	p := newSwanSites(t, "gresec-swli", "gresec-swan-"+newKey(t)[2:34])
	for _, a := range []string{"198.19.0.1/32", "2001:db8:19::1/128"} {
		if out, err := p.b.ns.Run("ip", "addr", "add", a, "dev", "lo"); err != nil {
			t.Fatalf("ip addr add %s dev lo: %v: %s", a, err, out)
		}
	}
	conf.Local, conf.Remote, conf.PSK = "198.18.0.2", "198.18.0.1", swan.Key(p.psk)
	text := conf.SwanctlConf()
	for _, c := range children {
		// More children of the one connection, inserted before its first.
		text = strings.Replace(text, "    children {\n", "    children {\n"+c, 1)
	}
	ch, err := swan.Start(p.b.ns.Name, text, swan.Options{Libipsec: true})
	if err != nil {
		t.Fatalf("charon: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("charon log (redacted, last lines):\n%s", lastLines(ch.RedactedLog(), 60))
		}
		ch.Stop()
	})

	psk := filepath.Join(p.dir, "a.psk")
	if err := os.WriteFile(psk, []byte(p.psk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.writeGresecSide(gresecInitiates, fmt.Sprintf("psk_file = %q\n", psk), gresecExtra)
	cfg, err := os.ReadFile(p.a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	shaped := strings.Replace(string(cfg), "[ipsec]\n",
		fmt.Sprintf("encap = \"none\"\n[ipsec]\nmode = \"tunnel\"\nudp_encap = %q\n", udpEncap), 1)
	if err := os.WriteFile(p.a.cfgPath, []byte(shaped), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start(p.a)
	if !gresecInitiates {
		if err := ch.Initiate("gre"); err != nil {
			t.Fatalf("charon initiate: %v\ngresec log:\n%s", err, p.a.proc.Out)
		}
	}
	return &swanPair{pair: p, charon: ch}
}

// pingThroughLibipsec pings IPv4 and IPv6 inner both ways: gresec's side
// to b's lo addresses, b (charon's ipsec0, table 220) to gresec's TUN.
func (sp *swanPair) pingThroughLibipsec(t *testing.T) {
	t.Helper()
	for _, c := range []struct {
		from *side
		dst  netip.Addr
	}{
		{sp.a, netip.MustParseAddr("198.19.0.1")},
		{sp.a, netip.MustParseAddr("2001:db8:19::1")},
		{sp.b, sp.a.tun4.Addr()},
		{sp.b, sp.a.tun6.Addr()},
	} {
		if got, out := sp.ping(c.from, c.dst, 5); got != 5 {
			t.Errorf("ping %s from %s through charon's kernel-libipsec: %d of 5 replies\n%s", c.dst, c.from.ns.Name, got, out)
		}
	}
}

// checkESPInUDP: gresec's status shows ESP in UDP 4500 to charon's 4500.
func (sp *swanPair) checkESPInUDP(t *testing.T) {
	t.Helper()
	st := sp.mustStatus(sp.a)
	if st.Mode != "tunnel" || st.Encap != "none" {
		t.Errorf("gresec status mode %q encap %q, want tunnel none", st.Mode, st.Encap)
	}
	if u := st.UDPEncap; u == nil || u.LocalPort != 4500 || u.RemotePort != 4500 {
		t.Errorf("gresec ESP-in-UDP status %+v, want 4500 -> 4500", u)
	}
	if st.IKE == nil || st.IKE.NAT.Encap != "udp" {
		t.Errorf("gresec IKE NAT status %+v, want encap udp", st.IKE)
	}
	if n := st.Inner.RxPackets; n < 20 {
		t.Errorf("gresec decapsulated %d inner packets, want the 20 pings' at least", n)
	}
}

// TestStrongSwanLibipsecVTI: gresec's VTI and charon's kernel-libipsec,
// both roles; gresec with udp_encap = "always" (its NAT detection faked,
// as charon's) and "auto" (it follows charon's faked NAT). One CHILD_SA
// carries IPv4 and IPv6.
func TestStrongSwanLibipsecVTI(t *testing.T) {
	for _, tc := range []struct {
		name            string
		gresecInitiates bool
		udpEncap        string
	}{
		{"gresec-initiates-always", true, "always"},
		{"gresec-initiates-auto", true, "auto"},
		{"strongswan-initiates-auto", false, "auto"},
		{"strongswan-initiates-always", false, "always"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := startSwanLibipsec(t, tc.gresecInitiates, tc.udpEncap, "", libipsecConn())
			_, child := sp.installed(t, "")
			if child.Mode != "TUNNEL" {
				t.Errorf("strongSwan installed mode %q, want TUNNEL", child.Mode)
			}
			if got := strings.Join(child.LocalTS, " ") + " === " + strings.Join(child.RemoteTS, " "); got != "198.19.0.1/32 2001:db8:19::1/128 === 198.19.0.0/32 2001:db8:19::/128" {
				t.Errorf("strongSwan's selectors %s", got)
			}
			sp.pingThroughLibipsec(t)
			sp.checkESPInUDP(t)
		})
	}
}

// TestStrongSwanLibipsecVTIPerFamily: charon with two children, one per
// family (IPv4 on one CHILD_SA, IPv6 on another, as strongSwan does with
// `local_ts = 0.0.0.0/0` and `::/0` in separate children). charon
// initiating starts both; gresec initiating proposes both families, gets
// one narrowed away and asks for it in a second CHILD_SA. Either way
// gresec installs both and sends each family on its own SA, so pings of
// both families cross both ways, before and after gresec rekeys each.
func TestStrongSwanLibipsecVTIPerFamily(t *testing.T) {
	for _, tc := range []struct {
		name            string
		gresecInitiates bool
	}{{"strongswan-initiates", false}, {"gresec-initiates", true}} {
		t.Run(tc.name, func(t *testing.T) { testLibipsecPerFamily(t, tc.gresecInitiates) })
	}
}

func testLibipsecPerFamily(t *testing.T, gresecInitiates bool) {
	v6 := "      gre6 {\n        mode = tunnel\n        local_ts = 2001:db8:19::1/128\n        remote_ts = 2001:db8:19::/128\n" +
		"        esp_proposals = " + swan.SeedESPProposal + "\n        start_action = none\n      }\n"
	// gresec rekeys each child after about 7 s, with its own selectors.
	sp := startSwanLibipsec(t, gresecInitiates, "auto", "child_lifetime = \"8s\"\n", swan.Conn{
		ChildExtra: "mode = tunnel\npolicies = yes\nlocal_ts = 198.19.0.1/32\nremote_ts = 198.19.0.0/32"}, v6)
	if !gresecInitiates {
		if err := sp.charon.Initiate("gre6"); err != nil {
			t.Fatalf("charon initiate gre6: %v\ngresec log:\n%s", err, sp.a.proc.Out)
		}
	}
	var sas []swan.IKESA
	ok := netns.WaitFor(20*time.Second, func() bool {
		var err error
		sas, err = sp.charon.SAs()
		return err == nil && len(sas) == 1 && len(sas[0].Installed()) == 2
	})
	if !ok {
		raw, _ := sp.charon.ListSAs()
		t.Fatalf("strongSwan did not install two CHILD_SAs:\n%s\ngresec log:\n%s", raw, sp.a.proc.Out)
	}
	st := sp.mustStatus(sp.a)
	if st.IKE == nil || st.IKE.Children != 2 {
		t.Errorf("gresec IKE status %+v, want 2 CHILD_SAs", st.IKE)
	}
	sp.pingThroughLibipsec(t)
	sp.checkESPInUDP(t)
	sp.checkFamilyChildren(t, sas[0].Installed())

	// Both children rekeyed (gresec initiating, each proposing its own
	// family's selectors): two new SAs, one per family, carry the pings.
	old := map[uint32]bool{}
	for _, c := range sas[0].Installed() {
		old[c.SPIIn] = true
	}
	var fresh []swan.ChildSA
	ok = netns.WaitFor(30*time.Second, func() bool {
		sas, err := sp.charon.SAs()
		if err != nil || len(sas) != 1 {
			return false
		}
		fresh = fresh[:0]
		for _, c := range sas[0].Installed() {
			if !old[c.SPIIn] {
				fresh = append(fresh, c)
			}
		}
		return len(fresh) == 2 && len(sas[0].Installed()) == 2
	})
	if !ok {
		raw, _ := sp.charon.ListSAs()
		t.Fatalf("both CHILD_SAs not rekeyed within 30 s:\n%s\ngresec log:\n%s", raw, sp.a.proc.Out)
	}
	for _, c := range fresh {
		if got := strings.Join(c.LocalTS, " ") + " === " + strings.Join(c.RemoteTS, " "); got != "198.19.0.1/32 === 198.19.0.0/32" &&
			got != "2001:db8:19::1/128 === 2001:db8:19::/128" {
			t.Errorf("rekeyed child %s has selectors %s, want one family's", c.Name, got)
		}
	}
	sp.pingThroughLibipsec(t)
	sp.checkFamilyChildren(t, fresh)
}

// checkFamilyChildren: each of charon's children carried the 10 echo
// requests and 10 replies of its family, 10 packets each way.
func (sp *swanPair) checkFamilyChildren(t *testing.T, children []swan.ChildSA) {
	t.Helper()
	raw, err := sp.charon.ListSAs()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range children {
		for _, dir := range []struct {
			name string
			spi  uint32
		}{{"in", c.SPIIn}, {"out", c.SPIOut}} {
			m := regexp.MustCompile(fmt.Sprintf(`%s +%08x[^,]*, +\d+ bytes, +(\d+) packets`, dir.name, dir.spi)).FindStringSubmatch(raw)
			if m == nil {
				t.Errorf("strongSwan child %s: no %s packet count in list-sas:\n%s", c.Name, dir.name, raw)
				continue
			}
			if n, _ := strconv.Atoi(m[1]); n < 10 {
				t.Errorf("strongSwan child %s (%v === %v) carried %d packets %s, want 10", c.Name, c.LocalTS, c.RemoteTS, n, dir.name)
			}
		}
	}
}
