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
	"github.com/gresec/gresec/internal/swan"
)

// startSwanShape is startSwanPairConn with gresec's [ipsec] mode and
// [tunnel] encap set, and extra lines in its [ike]. When gresec does not
// initiate, charon's initiation must succeed unless refused is set.
func startSwanShape(t *testing.T, gresecInitiates bool, mode, encap, gresecExtra string, conf swan.Conn, refused ...bool) *swanPair {
	t.Helper()
	p := newSwanSites(t, "gresec-swsh", "gresec-swan-"+newKey(t)[2:34])
	conf.Local, conf.Remote, conf.PSK = "198.18.0.2", "198.18.0.1", swan.Key(p.psk)
	ch := startCharon(t, p.b.ns.Name, swanConf(conf))

	psk := filepath.Join(p.dir, "a.psk")
	if err := os.WriteFile(psk, []byte(p.psk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.writeGresecSide(gresecInitiates, fmt.Sprintf("psk_file = %q\n", psk), gresecExtra)
	text, err := os.ReadFile(p.a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	shaped := strings.Replace(string(text), "[ipsec]\n", fmt.Sprintf("encap = %q\n[ipsec]\nmode = %q\n", encap, mode), 1)
	if err := os.WriteFile(p.a.cfgPath, []byte(shaped), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start(p.a)
	if !gresecInitiates {
		err := ch.Initiate("gre")
		if len(refused) == 0 && err != nil {
			t.Fatalf("charon initiate: %v", err)
		}
		if len(refused) > 0 && err == nil {
			t.Fatal("charon established a CHILD_SA gresec should have refused")
		}
	}
	return &swanPair{pair: p, charon: ch}
}

// checkKeysAgreeFields is checkKeysAgree (AES-GCM) for any shape: tshark,
// given strongSwan's inbound key, must decode the echo requests gresec
// sends as fields, each line wanting want.
func (sp *swanPair) checkKeysAgreeFields(t *testing.T, spiOut, want string, fields ...string) {
	t.Helper()
	keys, err := sp.charon.ChildKeys()
	if err != nil {
		t.Fatal(err)
	}
	var key []byte
	for _, k := range keys {
		if fmt.Sprintf("0x%08x", k.SPIIn) == spiOut {
			key = k.KeyIn
		}
	}
	if key == nil {
		t.Fatalf("strongSwan's log has no key for its inbound SPI %s", spiOut)
	}
	sa := espSA{sp.a.under.Addr(), sp.b.under.Addr(), spiOut, "0x" + hex.EncodeToString(key), "", "", ""}
	pcap, stop := captureESPFile(t, sp.b, "veth-b")
	sp.ping(sp.a, netip.MustParseAddr("198.19.0.1"), 3)
	stop()
	out := tsharkESP(t, pcap, []espSA{sa}, append([]string{"esp.spi"}, fields...)...)
	if n := strings.Count(out, spiOut+","+want); n < 3 {
		t.Errorf("tshark with strongSwan's key decoded %d of 3 echo requests as %q:\n%s", n, spiOut+","+want, out)
	}
}

// TestStrongSwanTunnelModeGRE: gresec's mode = "tunnel", encap = "gre"
// and strongSwan's `mode = tunnel` with GRE selectors between the
// underlay addresses (an IOS crypto map in tunnel mode over GRE): both
// roles agree on a TUNNEL CHILD_SA of protocol 47 host to host, and what
// gresec sends decrypts, with strongSwan's key, to IP (from the underlay
// addresses, protocol 47), GRE, the inner echo request.
func TestStrongSwanTunnelModeGRE(t *testing.T) {
	for _, tc := range []struct {
		name            string
		gresecInitiates bool
	}{{"gresec-initiates", true}, {"strongswan-initiates", false}} {
		t.Run(tc.name, func(t *testing.T) {
			sp := startSwanShape(t, tc.gresecInitiates, "tunnel", "gre", "", swan.Conn{ChildExtra: "mode = tunnel"})
			st, child := sp.installed(t, "")
			if child.Mode != "TUNNEL" {
				t.Errorf("strongSwan installed mode %q, want TUNNEL", child.Mode)
			}
			if strings.Join(child.LocalTS, " ") != "198.18.0.2/32[gre]" || strings.Join(child.RemoteTS, " ") != "198.18.0.1/32[gre]" {
				t.Errorf("selectors %v === %v, want GRE host to host", child.LocalTS, child.RemoteTS)
			}
			// The underlay header (ESP), tunnel mode's (GRE), the inner one
			// (ICMP): three ip.proto values.
			sp.checkKeysAgreeFields(t, st.Outbound.SPI, "50,47,1,0x0800,8", "ip.proto", "gre.proto", "icmp.type")
		})
	}
	// strongSwan asking for transport mode (USE_TRANSPORT_MODE) of a
	// tunnel-mode gresec: refused, nothing installed. (The other way
	// round strongSwan, configured for transport, accepts the tunnel
	// mode gresec asks for: transport is the initiator's request only.)
	t.Run("transport-request-refused", func(t *testing.T) {
		sp := startSwanShape(t, false, "tunnel", "gre", "", swan.Conn{}, true)
		if !waitLog(sp, "peer proposes a transport-mode CHILD_SA; we need tunnel mode") {
			t.Errorf("no refusal seen; gresec log:\n%s", sp.a.proc.Out)
		}
		if st := sp.mustStatus(sp.a); st.Outbound != nil {
			t.Errorf("gresec installed an outbound SA %+v for a mode it does not build", st.Outbound)
		}
	})
}

// TestStrongSwanVTI: gresec's VTI (mode = "tunnel", encap = "none",
// selectors 0.0.0.0/0 and ::/0) against strongSwan's route-based tunnel
// whose own side is 198.19.0.0/24 only: strongSwan narrows gresec's
// remote selectors to it as responder, gresec narrows strongSwan's
// proposal as responder, and the SA carries the bare inner packet.
func TestStrongSwanVTI(t *testing.T) {
	for _, tc := range []struct {
		name            string
		gresecInitiates bool
	}{{"gresec-initiates", true}, {"strongswan-initiates", false}} {
		t.Run(tc.name, func(t *testing.T) {
			sp := startSwanShape(t, tc.gresecInitiates, "tunnel", "none", "", swan.Conn{
				ChildExtra: "mode = tunnel\nlocal_ts = 198.19.0.0/24\nremote_ts = 0.0.0.0/0,::/0"})
			st, child := sp.installed(t, "")
			if child.Mode != "TUNNEL" {
				t.Errorf("strongSwan installed mode %q, want TUNNEL", child.Mode)
			}
			if strings.Join(child.LocalTS, " ") != "198.19.0.0/24" || strings.Join(child.RemoteTS, " ") != "0.0.0.0/0 ::/0" {
				t.Errorf("selectors %v === %v, want 198.19.0.0/24 === 0.0.0.0/0 ::/0", child.LocalTS, child.RemoteTS)
			}
			// One IP header only (no GRE): the inner packet is ESP's payload.
			sp.checkKeysAgreeFields(t, st.Outbound.SPI, "50,1,,8", "ip.proto", "gre.proto", "icmp.type")
		})
	}
}

// waitLog waits for gresec's log to hold one of the strings.
func waitLog(sp *swanPair, any ...string) bool {
	return netns.WaitFor(20*time.Second, func() bool {
		for _, s := range any {
			if strings.Contains(sp.a.proc.Out.String(), s) {
				return true
			}
		}
		return false
	})
}

// TestStrongSwanIPIPTransport: gresec's mode = "transport", encap =
// "ipip" against strongSwan in transport mode with selectors for
// protocols 4 and 41 between the underlay addresses (a gif peer's
// ipencap policy, IPv6 too), both roles; the inner packet is ESP's
// payload (next header 4).
func TestStrongSwanIPIPTransport(t *testing.T) {
	for _, tc := range []struct {
		name            string
		gresecInitiates bool
	}{{"gresec-initiates", true}, {"strongswan-initiates", false}} {
		t.Run(tc.name, func(t *testing.T) {
			sp := startSwanShape(t, tc.gresecInitiates, "transport", "ipip", "", swan.Conn{
				ChildExtra: "local_ts = dynamic[4],dynamic[41]\nremote_ts = dynamic[4],dynamic[41]"})
			st, child := sp.installed(t, "")
			if child.Mode != "TRANSPORT" {
				t.Errorf("strongSwan installed mode %q, want TRANSPORT", child.Mode)
			}
			if strings.Join(child.LocalTS, " ") != "198.18.0.2/32[ipencap] 198.18.0.2/32[ipv6]" ||
				strings.Join(child.RemoteTS, " ") != "198.18.0.1/32[ipencap] 198.18.0.1/32[ipv6]" {
				t.Errorf("selectors %v === %v, want protocols 4 and 41 host to host", child.LocalTS, child.RemoteTS)
			}
			sp.checkKeysAgreeFields(t, st.Outbound.SPI, "50,1,,8", "ip.proto", "gre.proto", "icmp.type")
		})
	}
}
