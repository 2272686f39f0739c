package integration

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/internal/natlab"
	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
	"github.com/gresec/gresec/internal/swan"
	"github.com/gresec/gresec/peerconf"
)

// natSwanCase is one gresec <-> strongSwan setup for NAT traversal.
type natSwanCase struct {
	// nat: a router between the sites (natlab); nil: the sites share a
	// link, no NAT.
	nat *natlab.Options
	// gresecInside: gresec is the site behind the NAT, else charon is.
	gresecInside    bool
	gresecInitiates bool
	// conn: charon's MOBIKE and Encap; addresses and PSK are filled in.
	conn swan.Conn
	// ipsecExtra: more [ipsec] lines for gresec (udp_encap); ikeExtra:
	// more [ike] lines (dpd).
	ipsecExtra, ikeExtra string
	// wantEncap: the CHILD_SA must carry ESP in UDP.
	wantEncap bool
	// generated: charon's swanctl.conf is `gresec peer-config --for
	// strongswan`'s (conn is ignored; no NAT).
	generated bool
	// v1: both sides speak IKEv1 (keying = "ikev1", charon version = 1;
	// strongswan_ikev1_nat_test.go).
	v1 bool
	// dynamic: gresec's tunnel has remote = "any" and knows charon by its
	// identity alone (dynamicSwanID); charon initiates.
	dynamic bool
}

// dynamicSwanID is charon's identity for a gresec tunnel with remote =
// "any".
const dynamicSwanID = "swan-dyn.example"

// natSwan is a running natSwanCase: gresec in sp.a, charon in sp.b.
type natSwan struct {
	*swanPair
	lab      *natlab.Lab // nil without NAT
	gresecIf string      // gresec's underlay interface, for captures
	// peer: charon's address as gresec sees it (the NAT's public address
	// when charon is behind it).
	peer netip.Addr
}

func startNATSwan(t *testing.T, c natSwanCase) *natSwan {
	t.Helper()
	nstest.RequireRoot(t, "network namespaces, nftables, TUN, strongSwan")
	for _, tool := range []string{"tshark", "tcpdump", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: `sudo make test` installs it", tool)
		}
	}
	if err := swan.Install(); err != nil {
		t.Fatalf("strongSwan: %v", err)
	}
	p := &pair{t: t, dir: t.TempDir(), psk: "gresec-swan-nat-" + newKey(t)[2:34]}
	p.a = &side{tun4: netip.MustParsePrefix("198.19.0.0/31"), tun6: netip.MustParsePrefix("2001:db8:19::/127")}
	p.b = &side{}
	ns := &natSwan{}
	conf := c.conn
	var remoteID string
	if c.nat == nil {
		p.a.under, p.b.under = netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("198.18.0.2/24")
		p.linkSites("gresec-swnat")
		ns.gresecIf, ns.peer = "veth-a", p.b.under.Addr()
		conf.Remote = p.a.under.Addr().String()
	} else {
		o := *c.nat
		o.Prefix = "gresec-swnat"
		lab, err := natlab.New(o)
		if err != nil {
			t.Fatal(err)
		}
		// Registered first, so it runs last: after gresec and charon
		// have stopped.
		t.Cleanup(func() { lab.Close() })
		ns.lab = lab
		if c.gresecInside {
			p.a.ns, p.a.under, ns.gresecIf = lab.Inside, lab.InsideAddr, natlab.InsideIf
			p.b.ns, p.b.under = lab.Outside, lab.OutsideAddr
			ns.peer = lab.OutsideAddr.Addr()
			// charon meets gresec at the NAT's address; gresec's identity
			// stays its own address.
			conf.Remote, conf.RemoteID = lab.Public.String(), p.a.under.Addr().String()
		} else {
			p.a.ns, p.a.under, ns.gresecIf = lab.Outside, lab.OutsideAddr, natlab.OutsideIf
			p.b.ns, p.b.under = lab.Inside, lab.InsideAddr
			ns.peer = lab.Public
			conf.Remote = p.a.under.Addr().String()
			remoteID = p.b.under.Addr().String()
		}
	}
	conf.Local, conf.PSK = p.b.under.Addr().String(), swan.Key(p.psk)
	if conf.MOBIKE == "" {
		conf.MOBIKE = "yes" // strongSwan's default, written out
	}
	psk := filepath.Join(p.dir, "a.psk")
	if err := os.WriteFile(psk, []byte(p.psk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.a.cfgPath, p.a.sock = filepath.Join(p.dir, "a.toml"), filepath.Join(p.dir, "a.sock")
	ikeExtra, keying := c.ikeExtra, "ikev2"
	if c.v1 {
		keying, conf.Version, conf.IKEProposal, conf.ESPProposal = "ikev1", 1, ikev1Proposal, ikev1Proposal
		ikeExtra += fmt.Sprintf("proposals = [%q]\nesp_proposals = [%q]\n", ikev1Proposal, ikev1Proposal)
	}
	remote := ns.peer.String()
	if c.dynamic {
		remote, remoteID, conf.LocalID = config.RemoteAny, dynamicSwanID, dynamicSwanID
	}
	if remoteID != "" {
		ikeExtra += fmt.Sprintf("remote_id = %q\n", remoteID)
	}
	cfg := fmt.Sprintf(`[tunnel]
local = %q
remote = %q
addresses = [%q, %q]
[ipsec]
keying = %q
%s[ike]
initiate = %v
psk_file = %q
%s[control]
socket = %q
`, p.a.under.Addr(), remote, p.a.tun4, p.a.tun6, keying, c.ipsecExtra, c.gresecInitiates, psk, ikeExtra, p.a.sock)
	if err := os.WriteFile(p.a.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	swanctl := conf.SwanctlConf()
	if c.generated {
		swanctl = generatedSwanctl(t, p.a.cfgPath)
	}
	var ch *swan.Charon
	if c.generated && !c.gresecInitiates {
		// The generated side initiates as soon as it is loaded.
		p.start(p.a)
		ch = startCharon(t, p.b.ns.Name, swanctl)
	} else {
		ch = startCharon(t, p.b.ns.Name, swanctl)
		p.start(p.a)
	}
	ns.swanPair = &swanPair{pair: p, charon: ch}
	if !c.gresecInitiates && !c.generated {
		if err := ch.Initiate("gre"); err != nil {
			raw, _ := ch.ListSAs()
			t.Fatalf("charon initiate: %v\nstrongSwan:\n%s\ngresec log:\n%s", err, raw, p.a.proc.Out)
		}
	}
	return ns
}

// check waits for the CHILD_SA on both ends and asserts what the wire and
// both peers show: IKE on UDP 4500 at charon, the CHILD_SA encapsulated
// or not as c wants, gresec's ESP decrypted by tshark with strongSwan's
// key, and a NAT that forwarded UDP only. It returns gresec's outbound
// SPI.
func (ns *natSwan) check(t *testing.T, c natSwanCase, notSPI string) string {
	t.Helper()
	st, child := ns.installed(t, notSPI)
	sas, err := ns.charon.SAs()
	if err != nil || len(sas) != 1 {
		t.Fatalf("strongSwan lists %d IKE SAs (%v), want 1", len(sas), err)
	}
	ike := sas[0]
	if child.Mode != "TRANSPORT" || child.Encap != c.wantEncap {
		t.Errorf("strongSwan installed %s with encap %v, want TRANSPORT with encap %v", child.Mode, child.Encap, c.wantEncap)
	}
	// IKE floats to 4500 when either end sees a NAT (real or faked), or
	// when charon initiates with MOBIKE; a MOBIKE responder stays on 500
	// unless the initiator moves (gresec announces no MOBIKE).
	wantPort := 500
	if c.nat != nil || c.wantEncap || !c.gresecInitiates {
		wantPort = 4500
	}
	if ike.LocalPort != wantPort {
		t.Errorf("strongSwan's IKE SA is on port %d, want %d", ike.LocalPort, wantPort)
	}
	if c.nat != nil {
		// charon sees the NAT where it is.
		if ike.NATLocal != !c.gresecInside || ike.NATRemote != c.gresecInside {
			t.Errorf("strongSwan's NAT detection: local %v remote %v; want a NAT in front of the %s", ike.NATLocal, ike.NATRemote,
				map[bool]string{true: "remote (gresec)", false: "local (charon)"}[c.gresecInside])
		}
	}
	// gresec's own view (status "nat"): where the NAT is, whether it
	// faked one, whether ESP goes in UDP, and the IKE ports.
	n := st.IKE.NAT
	wantHere := c.nat != nil && c.gresecInside
	wantFaked := strings.Contains(c.ipsecExtra, `"always"`)
	// A NAT at charon's end, or charon's faked one (encap = yes, which
	// peer-config writes for udp_encap = "always").
	wantThere := c.nat != nil && !c.gresecInside || c.conn.Encap || c.generated && wantFaked
	wantNAT := map[bool]string{true: "udp", false: "none"}[c.wantEncap]
	if n.NATHere != wantHere || n.NATThere != wantThere || n.Faked != wantFaked || n.Encap != wantNAT {
		t.Errorf("gresec's NAT status %+v; want nat_here %v, nat_peer %v, faked %v, encap %q", n, wantHere, wantThere, wantFaked, wantNAT)
	}
	if int(n.LocalPort) != wantPort {
		t.Errorf("gresec's IKE port is %d, want %d as strongSwan's", n.LocalPort, wantPort)
	}
	u := st.UDPEncap
	if c.wantEncap {
		if u == nil || u.LocalPort != 4500 || u.RemotePort == 0 {
			t.Errorf("gresec's udp_encap status %+v; want local port 4500 and the peer's port", u)
		} else if c.nat != nil && !c.gresecInside && c.nat.RandomPorts && u.RemotePort == 4500 {
			t.Errorf("gresec sends to port 4500, but charon is behind a NAT that maps 4500 elsewhere (%v)", mappings(ns.lab))
		}
	} else if u != nil && u.RemotePort != 0 {
		// The NAT-T socket is open (udp_encap = "auto"), but ESP goes raw.
		t.Errorf("gresec reports ESP in UDP to port %d, but the CHILD_SA is raw ESP", u.RemotePort)
	}
	if c.dynamic && (!st.Dynamic || st.Remote != ns.peer.String()) {
		t.Errorf("gresec's dynamic tunnel: dynamic %v, bound to %q; want charon's address as gresec sees it, %s", st.Dynamic, st.Remote, ns.peer)
	}
	ns.checkWire(t, c, st.Outbound.SPI)
	if ns.lab != nil {
		f, err := ns.lab.Forwarded()
		if err != nil {
			t.Fatal(err)
		}
		// ICMP only from charon's side: its kernel has no ESP, so it
		// answers our ESP in UDP with port unreachable (rate-limited).
		swanICMP, gresecICMP := f.ICMPOut, f.ICMPIn
		if c.gresecInside {
			swanICMP, gresecICMP = f.ICMPIn, f.ICMPOut
		}
		if f.ESPOut != 0 || f.ESPIn != 0 || f.OtherOut != 0 || f.OtherIn != 0 || gresecICMP != 0 || f.UDPOut == 0 || f.UDPIn == 0 {
			t.Errorf("the NAT forwarded %+v (ICMP from strongSwan's side %d); want UDP only, both ways", f, swanICMP)
		}
	}
	return st.Outbound.SPI
}

func mappings(l *natlab.Lab) []string {
	if l == nil {
		return nil
	}
	m, _ := l.Mappings()
	return m
}

// checkWire captures what gresec sends while it pings strongSwan's side
// (nobody answers there: charon's kernel has no ESP) and has tshark decrypt
// it with strongSwan's inbound key: GRE with the echo requests inside, in
// UDP when the SA is encapsulated, raw ESP otherwise.
func (ns *natSwan) checkWire(t *testing.T, c natSwanCase, spiOut string) {
	t.Helper()
	keys, err := ns.charon.ChildKeys()
	if err != nil {
		t.Fatal(err)
	}
	var key, integ []byte
	for _, k := range keys {
		if fmt.Sprintf("0x%08x", k.SPIIn) == spiOut {
			key, integ = k.KeyIn, k.IntegIn
		}
	}
	if key == nil {
		t.Fatalf("strongSwan's log has no key for its inbound SPI %s", spiOut)
	}
	pcap := filepath.Join(t.TempDir(), "wire.pcap")
	dump, err := ns.a.ns.Start("tcpdump", "-n", "--immediate-mode", "-Z", "root", "-i", ns.gresecIf, "-w", pcap, "esp or udp")
	if err != nil {
		t.Fatal(err)
	}
	if !netns.WaitFor(5*time.Second, func() bool { return strings.Contains(dump.Out.String(), "listening on") }) {
		t.Fatalf("tcpdump did not start: %s", dump.Out)
	}
	ns.ping(ns.a, netip.MustParseAddr("198.19.0.1"), 3)
	dump.Stop(5 * time.Second)

	sa := espSA{ns.a.under.Addr(), ns.peer, spiOut, "0x" + hex.EncodeToString(key), "", "", ""}
	if len(integ) > 0 { // AES-CBC (the IKEv1 cases), as checkKeysAgree
		sa.encr, sa.authKey = "AES-CBC [RFC3602]", "0x"+hex.EncodeToString(integ)
		sa.integ = map[int]string{20: "HMAC-SHA-1-96 [RFC2404]", 32: "HMAC-SHA-256-128 [RFC4868]"}[len(integ)]
	}
	out := tsharkESP(t, pcap, []espSA{sa}, "esp.spi", "gre.proto", "icmp.type", "udp.srcport", "udp.dstport")
	want := spiOut + ",0x0800,8,"
	if c.wantEncap {
		want += "4500,"
	} else {
		want += ","
	}
	if n := strings.Count(out, want); n < 3 {
		t.Errorf("tshark with strongSwan's key decoded %d of 3 echo requests as %q (spi,gre,icmp,udp ports):\n%s", n, want, out)
	}
	raw := tsharkESP(t, pcap, nil, "ip.proto")
	if n := strings.Count(raw, "50\n"); c.wantEncap && n != 0 {
		t.Errorf("%d raw ESP packets on the wire; want ESP in UDP only", n)
	}
}

// TestStrongSwanNAT: gresec and charon with a NAT between them, each side
// behind it, each initiating: IKE floats to UDP 4500 and the CHILD_SA is
// ESP in UDP on both ends. Behind a masquerade the public end cannot
// initiate, so those cases use a 1:1 NAT (a cloud VM's public address).
// The masquerade maps every flow to a random port.
func TestStrongSwanNAT(t *testing.T) {
	masq := &natlab.Options{Kind: natlab.Masquerade, RandomPorts: true}
	oneToOne := &natlab.Options{Kind: natlab.OneToOne}
	for _, tc := range []struct {
		name string
		c    natSwanCase
	}{
		{"strongswan-behind-masquerade-initiates", natSwanCase{nat: masq, gresecInitiates: false}},
		{"strongswan-behind-1to1-responds", natSwanCase{nat: oneToOne, gresecInitiates: true}},
		{"gresec-behind-masquerade-initiates", natSwanCase{nat: masq, gresecInside: true, gresecInitiates: true}},
		{"gresec-behind-1to1-responds", natSwanCase{nat: oneToOne, gresecInside: true, gresecInitiates: false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.wantEncap = true
			ns := startNATSwan(t, tc.c)
			spi := ns.check(t, tc.c, "")
			// strongSwan rekeys the CHILD_SA: the new one is encapsulated
			// too, and gresec sends on it through the NAT.
			if out, err := ns.charon.Swanctl("--rekey", "--child", "gre"); err != nil {
				t.Fatalf("swanctl --rekey: %v\n%s", err, out)
			}
			ns.check(t, tc.c, spi)
		})
	}
}

// TestStrongSwanDynamicPeer: strongSwan's charon initiates to a gresec
// tunnel with remote = "any", which knows it by its identity only: on a
// shared link, and from behind a masquerading NAT with random ports
// (gresec binds to the NAT's address and port, and ESP goes in UDP); then
// charon rekeys the CHILD_SA.
func TestStrongSwanDynamicPeer(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    natSwanCase
	}{
		{"no-nat", natSwanCase{dynamic: true}},
		{"behind-masquerade", natSwanCase{nat: &natlab.Options{Kind: natlab.Masquerade, RandomPorts: true}, dynamic: true, wantEncap: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := startNATSwan(t, tc.c)
			spi := ns.check(t, tc.c, "")
			if out, err := ns.charon.Swanctl("--rekey", "--child", "gre"); err != nil {
				t.Fatalf("swanctl --rekey: %v\n%s", err, out)
			}
			ns.check(t, tc.c, spi)
		})
	}
}

// publicPort is the NAT's current public port for the inside's UDP 4500
// flow to the outside's port 4500, or 0.
func (ns *natSwan) publicPort(t *testing.T) int {
	t.Helper()
	m, err := ns.lab.Mappings()
	if err != nil {
		t.Fatal(err)
	}
	prefix := netip.AddrPortFrom(ns.lab.InsideAddr.Addr(), 4500).String() + " -> "
	suffix := " => " + netip.AddrPortFrom(ns.lab.OutsideAddr.Addr(), 4500).String()
	for _, l := range m {
		if mid, ok := strings.CutPrefix(l, prefix); ok && strings.HasSuffix(l, suffix) {
			ap, err := netip.ParseAddrPort(strings.TrimSuffix(mid, suffix))
			if err == nil {
				return int(ap.Port())
			}
		}
	}
	return 0
}

// TestStrongSwanNATRebinding: the masquerade forgets its mappings
// (conntrack flushed) and the inside's next packets leave from a new
// random port. The end outside must follow on the next authenticated IKE
// message: gresec when strongSwan, behind the NAT, rekeys; strongSwan
// when gresec, behind the NAT, checks liveness (dpd 3 s). ESP then goes to
// the new port and the CHILD_SA keeps working.
func TestStrongSwanNATRebinding(t *testing.T) {
	masq := &natlab.Options{Kind: natlab.Masquerade, RandomPorts: true}
	for _, tc := range []struct {
		name string
		c    natSwanCase
	}{
		{"strongswan-behind-nat", natSwanCase{nat: masq, wantEncap: true}},
		{"gresec-behind-nat", natSwanCase{nat: masq, gresecInside: true, gresecInitiates: true, wantEncap: true, ikeExtra: "dpd = \"3s\"\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := startNATSwan(t, tc.c)
			spi := ns.check(t, tc.c, "")
			old := ns.publicPort(t)
			if old == 0 {
				t.Fatalf("no NAT mapping for the inside's port 4500: %v", mappings(ns.lab))
			}
			if n, err := ns.lab.FlushConntrack(); err != nil || n == 0 {
				t.Fatalf("conntrack flush removed %d entries: %v", n, err)
			}
			if !tc.c.gresecInside {
				// An authenticated IKE request from behind the NAT.
				if out, err := ns.charon.Swanctl("--rekey", "--child", "gre"); err != nil {
					t.Fatalf("swanctl --rekey: %v\n%s", err, out)
				}
			}
			var port int
			if !netns.WaitFor(30*time.Second, func() bool {
				port = ns.publicPort(t)
				if port == 0 || port == old {
					return false
				}
				if tc.c.gresecInside {
					sas, err := ns.charon.SAs()
					return err == nil && len(sas) == 1 && sas[0].RemotePort == port
				}
				st, err := ns.status(ns.a)
				return err == nil && st.UDPEncap != nil && st.UDPEncap.RemotePort == port
			}) {
				st, _ := ns.status(ns.a)
				raw, _ := ns.charon.ListSAs()
				t.Fatalf("the outside end did not follow the new mapping (port %d, was %d) within 30 s\ngresec udp_encap %+v nat %+v\nstrongSwan:\n%s\nmappings %v",
					port, old, st.UDPEncap, st.IKE, raw, mappings(ns.lab))
			}
			t.Logf("NAT mapping for 4500: port %d, then %d", old, port)
			if tc.c.gresecInside {
				ns.check(t, tc.c, "")
			} else {
				ns.check(t, tc.c, spi)
			}
		})
	}
}

// generatedSwanctl is peerconf's swanctl.conf for the gresec config at
// path, keys included.
func generatedSwanctl(t *testing.T, path string) string {
	t.Helper()
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := peerconf.Generate(c, peerconf.Options{Peer: peerconf.StrongSwan, IncludeSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	sec, ok := out.Section(peerconf.SwanctlFile)
	if !ok {
		t.Fatalf("no %s section in the output", peerconf.SwanctlFile)
	}
	return sec.Text
}

// TestPeerConfigStrongSwanNAT: the swanctl.conf peer-config writes works
// as is with NAT traversal: at gresec's default udp_encap it has no
// mobike = no any more, so the generated side, initiating, floats IKE to
// 4500; with udp_encap = "always" it says encap = yes and both ends put
// ESP in UDP.
func TestPeerConfigStrongSwanNAT(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    natSwanCase
		want string // in the generated swanctl.conf
	}{
		{"auto-strongswan-initiates", natSwanCase{generated: true}, ""},
		{"always-gresec-initiates", natSwanCase{generated: true, gresecInitiates: true, ipsecExtra: udpAlways, wantEncap: true}, "encap = yes"},
		{"always-strongswan-initiates", natSwanCase{generated: true, ipsecExtra: udpAlways, wantEncap: true}, "encap = yes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := startNATSwan(t, tc.c)
			conf := generatedSwanctl(t, ns.a.cfgPath)
			if strings.Contains(conf, "mobike") || !strings.Contains(conf, tc.want) {
				// Up to the secrets section: the PSK stays out of the log.
				conns, _, _ := strings.Cut(conf, "secrets {")
				t.Errorf("generated swanctl.conf: want no mobike line and %q:\n%s", tc.want, conns)
			}
			ns.check(t, tc.c, "")
		})
	}
}

// TestStrongSwanFloatsWithoutNAT: charon at its defaults (mobike = yes)
// moves IKE to UDP 4500 after IKE_SA_INIT although there is no NAT; ESP
// stays raw. With encap = yes charon fakes a NAT and both ends put ESP in
// UDP; gresec's udp_encap = "always" does the same from gresec's end.
func TestStrongSwanFloatsWithoutNAT(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    natSwanCase
	}{
		{"mobike-gresec-initiates", natSwanCase{gresecInitiates: true}},
		{"mobike-strongswan-initiates", natSwanCase{}},
		{"encap-yes-gresec-initiates", natSwanCase{gresecInitiates: true, conn: swan.Conn{Encap: true}, wantEncap: true}},
		{"encap-yes-strongswan-initiates", natSwanCase{conn: swan.Conn{Encap: true}, wantEncap: true}},
		{"udp-encap-always-gresec-initiates", natSwanCase{gresecInitiates: true, ipsecExtra: udpAlways, wantEncap: true}},
		{"udp-encap-always-strongswan-initiates", natSwanCase{ipsecExtra: udpAlways, wantEncap: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := startNATSwan(t, tc.c)
			ns.check(t, tc.c, "")
		})
	}
}
