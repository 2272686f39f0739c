package integration

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
	"github.com/gresec/gresec/internal/swan"
	"github.com/gresec/gresec/tunnel"
)

// swanPair is gresec in site a and strongSwan's charon in site b.
type swanPair struct {
	*pair
	charon *swan.Charon
}

// newSwanSites makes site a (gresec, with tunnel addresses) and site b (the
// strongSwan side) in namespaces joined by veth, removed at cleanup.
func newSwanSites(t *testing.T, prefix, psk string) *pair {
	t.Helper()
	nstest.RequireRoot(t, "network namespaces, TUN, raw sockets, strongSwan")
	if err := swan.Install(); err != nil {
		t.Fatalf("strongSwan: %v", err)
	}
	p := &pair{t: t, dir: t.TempDir(), psk: psk}
	p.a = &side{under: netip.MustParsePrefix("198.18.0.1/24"), tun4: netip.MustParsePrefix("198.19.0.0/31"), tun6: netip.MustParsePrefix("2001:db8:19::/127")}
	p.b = &side{under: netip.MustParsePrefix("198.18.0.2/24")}
	p.linkSites(prefix)
	return p
}

// writeGresecSide writes site a's config: keying ikev2 against site b,
// with ikeKeys (the PSK file lines) and extra lines in [ike].
func (p *pair) writeGresecSide(initiate bool, ikeKeys, extra string) {
	p.a.cfgPath, p.a.sock = filepath.Join(p.dir, "a.toml"), filepath.Join(p.dir, "a.sock")
	c := fmt.Sprintf(`[tunnel]
local = "198.18.0.1"
remote = "198.18.0.2"
addresses = [%q, %q]
[ipsec]
keying = "ikev2"
[ike]
initiate = %v
%s%s[control]
socket = %q
`, p.a.tun4, p.a.tun6, initiate, ikeKeys, extra, p.a.sock)
	if err := os.WriteFile(p.a.cfgPath, []byte(c), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// startCharon runs charon with conf in ns, stopped (and its log shown if
// the test failed) at cleanup.
func startCharon(t *testing.T, ns, conf string) *swan.Charon {
	t.Helper()
	return startCharonWith(t, ns, conf, swan.Options{})
}

// startCharonWith is startCharon with options.
func startCharonWith(t *testing.T, ns, conf string, o swan.Options) *swan.Charon {
	t.Helper()
	ch, err := swan.Start(ns, conf, o)
	if err != nil {
		t.Fatalf("charon: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("charon log (redacted, last lines):\n%s", lastLines(ch.RedactedLog(), 40))
		}
		ch.Stop()
	})
	return ch
}

// swanConf renders charon's swanctl.conf, at strongSwan's defaults
// unless the test says otherwise: with mobike = yes charon moves IKE to
// UDP 4500 after IKE_SA_INIT, and gresec follows (NAT traversal).
func swanConf(conf swan.Conn) string {
	return conf.SwanctlConf()
}

// startSwanPair brings up gresec (keying ikev2, the iked + IOS pair defaults) against
// charon with the iked + IOS pair's proposals, transport mode, GRE selectors.
func startSwanPair(t *testing.T, gresecInitiates bool, gresecExtra, childExtra string) *swanPair {
	t.Helper()
	return startSwanPairConn(t, gresecInitiates, gresecExtra, swan.Conn{ChildExtra: childExtra})
}

// startSwanPairConn is startSwanPair with charon's connection given
// (addresses and PSK are filled in).
func startSwanPairConn(t *testing.T, gresecInitiates bool, gresecExtra string, conf swan.Conn) *swanPair {
	t.Helper()
	p := newSwanSites(t, "gresec-swan", "gresec-swan-"+newKey(t)[2:34])
	conf.Local, conf.Remote, conf.PSK = "198.18.0.2", "198.18.0.1", swan.Key(p.psk)
	ch := startCharon(t, p.b.ns.Name, swanConf(conf))

	psk := filepath.Join(p.dir, "a.psk")
	if err := os.WriteFile(psk, []byte(p.psk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.writeGresecSide(gresecInitiates, fmt.Sprintf("psk_file = %q\n", psk), gresecExtra)
	p.start(p.a)
	if !gresecInitiates {
		if err := ch.Initiate("gre"); err != nil {
			t.Fatalf("charon initiate: %v", err)
		}
	}
	return &swanPair{pair: p, charon: ch}
}

// installed waits for gresec and charon to agree on one installed
// CHILD_SA and returns both views.
func (sp *swanPair) installed(t *testing.T, notSPI string) (tunnel.Status, swan.ChildSA) {
	t.Helper()
	var st tunnel.Status
	var child swan.ChildSA
	ok := netns.WaitFor(20*time.Second, func() bool {
		var err error
		if st, err = sp.status(sp.a); err != nil || st.IKE == nil || st.IKE.State != "established" || st.Outbound == nil || st.Outbound.SPI == notSPI {
			return false
		}
		sas, err := sp.charon.SAs()
		if err != nil || len(sas) == 0 || sas[0].State != "ESTABLISHED" {
			return false
		}
		for _, c := range sas[0].Installed() {
			if fmt.Sprintf("0x%08x", c.SPIIn) == st.Outbound.SPI {
				child = c
				return true
			}
		}
		return false
	})
	if !ok {
		raw, _ := sp.charon.ListSAs()
		t.Fatalf("gresec and strongSwan did not agree on an installed CHILD_SA within 20 s\ngresec: %+v out %+v\nstrongSwan:\n%s\ngresec log:\n%s", st.IKE, st.Outbound, raw, sp.a.proc.Out)
	}
	return st, child
}

// checkKeysAgree captures ESP that gresec sends and has tshark decrypt it
// with the key strongSwan derived (from its own log), expecting GRE
// carrying our pings inside.
func (sp *swanPair) checkKeysAgree(t *testing.T, spiOut string) {
	t.Helper()
	keys, err := sp.charon.ChildKeys()
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
	sa := espSA{sp.a.under.Addr(), sp.b.under.Addr(), spiOut, "0x" + hex.EncodeToString(key), "", "", ""}
	if len(integ) > 0 {
		// AES-CBC: the integrity algorithm by its key length.
		sa.encr, sa.authKey = "AES-CBC [RFC3602]", "0x"+hex.EncodeToString(integ)
		sa.integ = map[int]string{20: "HMAC-SHA-1-96 [RFC2404]", 32: "HMAC-SHA-256-128 [RFC4868]",
			48: "HMAC-SHA-384-192 [RFC4868]", 64: "HMAC-SHA-512-256 [RFC4868]"}[len(integ)]
	}
	pcap, stop := captureESPFile(t, sp.b, "veth-b")
	// Nobody answers on strongSwan's side (its kernel has no ESP here):
	// the requests are what we decrypt.
	sp.ping(sp.a, netip.MustParseAddr("198.19.0.1"), 3)
	stop()
	out := tsharkESP(t, pcap, []espSA{sa}, "esp.spi", "gre.proto", "icmp.type")
	want := spiOut + ",0x0800,8"
	if n := strings.Count(out, want); n < 3 {
		t.Errorf("tshark with strongSwan's key decoded %d of 3 echo requests as %q:\n%s", n, want, out)
	}
}

func TestStrongSwanInterop(t *testing.T) {
	for _, tc := range []struct {
		name            string
		gresecInitiates bool
	}{{"gresec-initiates", true}, {"strongswan-initiates", false}} {
		t.Run(tc.name, func(t *testing.T) {
			sp := startSwanPair(t, tc.gresecInitiates, "", "")
			st, child := sp.installed(t, "")
			if child.Mode != "TRANSPORT" || child.EncrAlg != "AES_GCM_16" || child.EncrKey != 256 {
				t.Errorf("strongSwan installed %+v, want TRANSPORT AES_GCM_16-256", child)
			}
			if fmt.Sprintf("0x%08x", child.SPIOut) != st.Inbound[0].SPI {
				t.Errorf("strongSwan sends with 0x%08x, gresec receives on %s", child.SPIOut, st.Inbound[0].SPI)
			}
			if strings.Join(child.LocalTS, " ") != "198.18.0.2/32[gre]" || strings.Join(child.RemoteTS, " ") != "198.18.0.1/32[gre]" {
				t.Errorf("selectors %v === %v, want GRE (protocol 47) host to host", child.LocalTS, child.RemoteTS)
			}
			sas, _ := sp.charon.SAs()
			if s := sas[0]; s.EncrAlg != "AES_GCM_16" || s.PRF != "PRF_HMAC_SHA2_384" || s.DHGroup != "ECP_384" {
				t.Errorf("IKE SA %s/%s/%s, want the iked + IOS pair's AES_GCM_16/PRF_HMAC_SHA2_384/ECP_384", s.EncrAlg, s.PRF, s.DHGroup)
			}
			sp.checkKeysAgree(t, st.Outbound.SPI)

			// strongSwan rekeys the CHILD_SA: PFS with ecp384, gresec follows.
			if out, err := sp.charon.Swanctl("--rekey", "--child", "gre"); err != nil {
				t.Fatalf("swanctl --rekey: %v\n%s", err, out)
			}
			st2, child2 := sp.installed(t, st.Outbound.SPI)
			if child2.DHGroup != "ECP_384" {
				t.Errorf("rekeyed CHILD_SA has DH group %q, want ECP_384 (PFS)", child2.DHGroup)
			}
			sp.checkKeysAgree(t, st2.Outbound.SPI)

			// strongSwan deletes the IKE SA: gresec removes its SAs.
			if out, err := sp.charon.Swanctl("--terminate", "--ike", "gre"); err != nil {
				t.Fatalf("swanctl --terminate: %v\n%s", err, out)
			}
			if !netns.WaitFor(10*time.Second, func() bool {
				st, err := sp.status(sp.a)
				return err == nil && st.Outbound == nil
			}) {
				t.Errorf("gresec still sends on an SA after strongSwan deleted the IKE SA: %+v", sp.mustStatus(sp.a).Outbound)
			}
		})
	}
}

// TestStrongSwanGresecRekeysAndDeletes has gresec rekey the CHILD_SA
// (child_lifetime 10 s, PFS) and then delete everything on shutdown.
func TestStrongSwanGresecRekeysAndDeletes(t *testing.T) {
	sp := startSwanPair(t, true, "child_lifetime = \"10s\"\n", "rekey_time = 0")
	st, _ := sp.installed(t, "")
	deadline := 20 * time.Second
	var child2 swan.ChildSA
	if !netns.WaitFor(deadline, func() bool {
		var st2 tunnel.Status
		st2, child2 = sp.installed(t, st.Outbound.SPI)
		return st2.Outbound.SPI != st.Outbound.SPI
	}) {
		t.Fatal("gresec did not rekey the CHILD_SA")
	}
	if child2.DHGroup != "ECP_384" {
		t.Errorf("gresec's rekey gave DH group %q, want ECP_384 (PFS)", child2.DHGroup)
	}
	// SIGTERM: gresec deletes its IKE SA, strongSwan drops it.
	if err := sp.a.proc.Stop(5 * time.Second); err != nil {
		t.Errorf("gresec stop: %v", err)
	}
	if !netns.WaitFor(10*time.Second, func() bool {
		sas, err := sp.charon.SAs()
		return err == nil && len(sas) == 0
	}) {
		raw, _ := sp.charon.ListSAs()
		t.Errorf("strongSwan still lists SAs after gresec stopped:\n%s", raw)
	}
}

// TestStrongSwanBothInitiate: both ends initiate on their own, as seed
// 000's iked pair does (`active` on both): strongSwan with start_action =
// start, gresec with initiate = true. However their IKE SAs cross, both
// must settle on one IKE SA with the same SPIs and one installed
// CHILD_SA, and carry traffic.
func TestStrongSwanBothInitiate(t *testing.T) {
	sp := startSwanPair(t, true, "", "start_action = start")
	var sas []swan.IKESA
	var st tunnel.Status
	settled := netns.WaitFor(60*time.Second, func() bool {
		var err error
		if sas, err = sp.charon.SAs(); err != nil || len(sas) != 1 || sas[0].State != "ESTABLISHED" || len(sas[0].Installed()) != 1 {
			return false
		}
		if st, err = sp.status(sp.a); err != nil || st.IKE == nil || st.IKE.State != "established" || st.Outbound == nil {
			return false
		}
		return st.IKE.SPIi == fmt.Sprintf("%016x", sas[0].SPIi) && st.IKE.SPIr == fmt.Sprintf("%016x", sas[0].SPIr) &&
			st.Outbound.SPI == fmt.Sprintf("0x%08x", sas[0].Installed()[0].SPIIn)
	})
	if !settled {
		raw, _ := sp.charon.ListSAs()
		t.Fatalf("no single agreed IKE SA within 60 s\nstrongSwan:\n%s\ngresec: %+v", raw, st.IKE)
	}
	t.Logf("settled on IKE SA %s_i %s_r, strongSwan initiator %v", st.IKE.SPIi, st.IKE.SPIr, sas[0].Initiator)
	// strongSwan's first IKE_SA_INIT went out before gresec ran; its
	// retransmission met gresec's own IKE SA, so there were two.
	if !strings.Contains(sp.a.proc.Out.String(), "two IKE SAs with the peer") {
		t.Errorf("gresec never saw a second IKE SA: the test did not make the two initiations cross\n%s", sp.a.proc.Out)
	}
	sp.checkKeysAgree(t, st.Outbound.SPI)
}

// TestStrongSwanIKETransforms negotiates the IKE SA with the seeds' other
// suites — the appliance's "AES SHA 14" (aes128-sha1-modp2048), CBC with
// SHA-2, ChaCha20-Poly1305, MODP 3072/4096 — in both roles, and checks
// that strongSwan agrees on every algorithm, that the CHILD_SA carries
// traffic (tshark with strongSwan's keys) and that an IKE rekey by
// strongSwan keeps the tunnel.
func TestStrongSwanIKETransforms(t *testing.T) {
	for _, tc := range []struct {
		proposal          string
		encr              string
		keySize           int
		integ, prf, group string
		gresecInitiates   bool
	}{
		{"aes128-sha1-modp2048", "AES_CBC", 128, "HMAC_SHA1_96", "PRF_HMAC_SHA1", "MODP_2048", true},
		{"aes128-sha1-modp2048", "AES_CBC", 128, "HMAC_SHA1_96", "PRF_HMAC_SHA1", "MODP_2048", false},
		{"aes256-sha256-ecp384", "AES_CBC", 256, "HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256", "ECP_384", false},
		{"aes192-sha384-prfsha512-modp3072", "AES_CBC", 192, "HMAC_SHA2_384_192", "PRF_HMAC_SHA2_512", "MODP_3072", true},
		{"aes256-sha512-modp4096", "AES_CBC", 256, "HMAC_SHA2_512_256", "PRF_HMAC_SHA2_512", "MODP_4096", false},
		{"chacha20poly1305-prfsha256-curve25519", "CHACHA20_POLY1305", 0, "", "PRF_HMAC_SHA2_256", "CURVE_25519", true},
		// Several proposals as an array: numbered 1, 2 on the wire, so a
		// responder that takes only the second finds it.
		{`aes256gcm16-prfsha384-ecp384", "aes128-sha1-modp2048`, "AES_CBC", 128, "HMAC_SHA1_96", "PRF_HMAC_SHA1", "MODP_2048", true},
	} {
		role := "strongswan-initiates"
		if tc.gresecInitiates {
			role = "gresec-initiates"
		}
		t.Run(strings.ReplaceAll(tc.proposal, `", "`, ",")+"/"+role, func(t *testing.T) {
			swanProposal := tc.proposal
			if i := strings.LastIndex(swanProposal, `"`); i >= 0 {
				swanProposal = swanProposal[i+1:] // strongSwan takes only the last of gresec's list
			}
			sp := startSwanPairConn(t, tc.gresecInitiates, fmt.Sprintf("proposals = [\"%s\"]\n", tc.proposal),
				swan.Conn{IKEProposal: swanProposal})
			st, _ := sp.installed(t, "")
			sas, _ := sp.charon.SAs()
			s := sas[0]
			if s.EncrAlg != tc.encr || s.EncrKey != tc.keySize || s.IntegAlg != tc.integ || s.PRF != tc.prf || s.DHGroup != tc.group {
				t.Errorf("strongSwan's IKE SA: %s-%d %q %s %s, want %s-%d %q %s %s", s.EncrAlg, s.EncrKey, s.IntegAlg, s.PRF, s.DHGroup,
					tc.encr, tc.keySize, tc.integ, tc.prf, tc.group)
			}
			if want := swanProposal; !strings.HasPrefix(st.IKE.Suite, want[:strings.IndexByte(want, '-')]) {
				t.Errorf("gresec's suite %q for %q", st.IKE.Suite, want)
			}
			sp.checkKeysAgree(t, st.Outbound.SPI)

			// strongSwan rekeys the IKE SA (CREATE_CHILD_SA with the
			// suite's group); the tunnel stays up on the new one.
			if out, err := sp.charon.Swanctl("--rekey", "--ike", "gre"); err != nil {
				t.Fatalf("swanctl --rekey --ike: %v\n%s", err, out)
			}
			if !netns.WaitFor(20*time.Second, func() bool {
				sas, err := sp.charon.SAs()
				st, err2 := sp.status(sp.a)
				return err == nil && err2 == nil && len(sas) == 1 && sas[0].SPIi != s.SPIi && sas[0].State == "ESTABLISHED" &&
					st.IKE != nil && st.IKE.SPIi == fmt.Sprintf("%016x", sas[0].SPIi)
			}) {
				raw, _ := sp.charon.ListSAs()
				t.Fatalf("IKE rekey: no single new IKE SA within 20 s\nstrongSwan:\n%s\ngresec: %+v", raw, sp.mustStatus(sp.a).IKE)
			}
			if got, out := sp.ping(sp.a, netip.MustParseAddr("198.19.0.1"), 1); got != 0 {
				t.Logf("unexpected reply (%s)", out) // strongSwan's side has no ESP: requests only
			}
			sp.checkKeysAgree(t, sp.mustStatus(sp.a).Outbound.SPI)
		})
	}
}

// TestStrongSwanESPTransforms negotiates the CHILD_SA with the seeds'
// other ESP transforms: the appliance's "AES SHA 14" (aes128-sha1 with PFS
// group 14), the one iked on Linux can key (aes256-sha256), SHA-512,
// ChaCha20-Poly1305 and AES-GCM with extended sequence numbers. strongSwan
// must install the same algorithms, tshark must decrypt our ESP with
// strongSwan's keys (it cannot do ChaCha20), and a CHILD_SA rekey by
// strongSwan (PFS where the proposal has a group) must keep the transform.
func TestStrongSwanESPTransforms(t *testing.T) {
	for _, tc := range []struct {
		name, ike, esp  string
		encr, integ     string
		keySize         int
		esn             bool
		pfs             string
		gresecInitiates bool
		decrypt         bool
	}{
		{"appliance-aes128-sha1-modp2048", "aes128-sha1-modp2048", "aes128-sha1-modp2048", "AES_CBC", "HMAC_SHA1_96", 128, false, "MODP_2048", true, true},
		{"appliance-aes128-sha1-modp2048", "aes128-sha1-modp2048", "aes128-sha1-modp2048", "AES_CBC", "HMAC_SHA1_96", 128, false, "MODP_2048", false, true},
		{"iked-linux-aes256-sha256", "aes256gcm16-prfsha384-ecp384", "aes256-sha256-ecp384", "AES_CBC", "HMAC_SHA2_256_128", 256, false, "ECP_384", false, true},
		{"aes256-sha512", "aes256gcm16-prfsha384-ecp384", "aes256-sha512", "AES_CBC", "HMAC_SHA2_512_256", 256, false, "", true, true},
		{"chacha20poly1305", "chacha20poly1305-prfsha256-curve25519", "chacha20poly1305-curve25519", "CHACHA20_POLY1305", "", 0, false, "CURVE_25519", true, false},
		{"aes256gcm16-esn", "aes256gcm16-prfsha384-ecp384", "aes256gcm16-esn", "AES_GCM_16", "", 256, true, "", false, true},
	} {
		role := "strongswan-initiates"
		if tc.gresecInitiates {
			role = "gresec-initiates"
		}
		t.Run(tc.name+"/"+role, func(t *testing.T) {
			sp := startSwanPairConn(t, tc.gresecInitiates, fmt.Sprintf("proposals = [%q]\nesp_proposals = [%q]\n", tc.ike, tc.esp),
				swan.Conn{IKEProposal: tc.ike, ESPProposal: tc.esp})
			st, child := sp.installed(t, "")
			check := func(child swan.ChildSA, pfs string) {
				t.Helper()
				if child.EncrAlg != tc.encr || child.EncrKey != tc.keySize || child.IntegAlg != tc.integ || child.ESN != tc.esn || child.Mode != "TRANSPORT" {
					t.Errorf("strongSwan installed %s-%d %q esn %v %s, want %s-%d %q esn %v TRANSPORT",
						child.EncrAlg, child.EncrKey, child.IntegAlg, child.ESN, child.Mode, tc.encr, tc.keySize, tc.integ, tc.esn)
				}
				if child.DHGroup != pfs {
					t.Errorf("CHILD_SA DH group %q, want %q", child.DHGroup, pfs)
				}
			}
			check(child, "") // IKE_AUTH has no KE
			if tc.decrypt {
				sp.checkKeysAgree(t, st.Outbound.SPI)
			}
			if out, err := sp.charon.Swanctl("--rekey", "--child", "gre"); err != nil {
				t.Fatalf("swanctl --rekey: %v\n%s", err, out)
			}
			st2, child2 := sp.installed(t, st.Outbound.SPI)
			check(child2, tc.pfs)
			if tc.decrypt {
				sp.checkKeysAgree(t, st2.Outbound.SPI)
			}
		})
	}
}
