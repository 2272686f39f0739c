package integration

import (
	"testing"

	"github.com/gresec/gresec/internal/natlab"
	"github.com/gresec/gresec/internal/swan"
)

// checkV1 is check (strongswan_nat_test.go) for IKEv1: strongSwan and
// gresec agree on an installed phase 2 SA in UDP-encapsulated transport
// mode, IKE runs on port 4500 at charon, each sees the NAT where it is,
// tshark decrypts gresec's ESP in UDP with strongSwan's key, and the NAT
// forwarded UDP only. It returns gresec's outbound SPI.
func (ns *natSwan) checkV1(t *testing.T, c natSwanCase, notSPI string) string {
	t.Helper()
	st, child, ike := ns.installedV1(t, notSPI)
	if ike.Version != 1 || child.Mode != "TRANSPORT" || child.Encap != c.wantEncap {
		t.Errorf("strongSwan installed IKEv%d %s with encap %v, want IKEv1 TRANSPORT with encap %v", ike.Version, child.Mode, child.Encap, c.wantEncap)
	}
	if c.wantEncap && ike.LocalPort != 4500 {
		t.Errorf("strongSwan's phase 1 SA is on port %d, want 4500", ike.LocalPort)
	}
	if c.nat != nil && (ike.NATLocal != !c.gresecInside || ike.NATRemote != c.gresecInside) {
		t.Errorf("strongSwan's NAT detection: local %v remote %v; gresec inside %v", ike.NATLocal, ike.NATRemote, c.gresecInside)
	}
	n := st.IKEv1.NAT
	wantHere := c.nat != nil && c.gresecInside
	wantThere := c.nat != nil && !c.gresecInside || c.conn.Encap
	wantEncap := map[bool]string{true: "udp", false: "none"}[c.wantEncap]
	if n == nil || n.NATHere != wantHere || n.NATThere != wantThere || n.Encap != wantEncap {
		t.Errorf("gresec's IKEv1 NAT status %+v; want nat_here %v, nat_peer %v, encap %q", n, wantHere, wantThere, wantEncap)
	}
	if u := st.UDPEncap; c.wantEncap && (u == nil || u.LocalPort != 4500 || u.RemotePort == 0 || u.IKE == 0) {
		t.Errorf("gresec's udp_encap status %+v; want local port 4500, the peer's port, IKE on it", u)
	}
	ns.checkWire(t, c, st.Outbound.SPI)
	if ns.lab != nil {
		f, err := ns.lab.Forwarded()
		if err != nil {
			t.Fatal(err)
		}
		gresecICMP := f.ICMPIn
		if c.gresecInside {
			gresecICMP = f.ICMPOut
		}
		if f.ESPOut != 0 || f.ESPIn != 0 || f.OtherOut != 0 || f.OtherIn != 0 || gresecICMP != 0 || f.UDPOut == 0 || f.UDPIn == 0 {
			t.Errorf("the NAT forwarded %+v; want UDP only, both ways", f)
		}
	}
	return st.Outbound.SPI
}

// TestStrongSwanIKEv1NAT: gresec (keying = "ikev1") and strongSwan
// (version = 1) with a NAT between them, each side behind it, each
// initiating: RFC 3947 NAT-D finds the NAT, IKE floats to UDP 4500, the
// phase 2 SA is UDP-Encapsulated-Transport on both ends, and a phase 2
// rekey by strongSwan stays encapsulated. Then udp_encap = "always"
// against charon's encap = yes on a plain link.
func TestStrongSwanIKEv1NAT(t *testing.T) {
	masq := &natlab.Options{Kind: natlab.Masquerade, RandomPorts: true}
	oneToOne := &natlab.Options{Kind: natlab.OneToOne}
	for _, tc := range []struct {
		name string
		c    natSwanCase
	}{
		{"strongswan-behind-masquerade-initiates", natSwanCase{nat: masq, gresecInitiates: false}},
		{"strongswan-behind-1to1-responds", natSwanCase{nat: oneToOne, gresecInitiates: true}},
		{"gresec-behind-masquerade-initiates", natSwanCase{nat: masq, gresecInside: true, gresecInitiates: true, ipsecExtra: "nat_keepalive = \"2s\"\n"}},
		{"gresec-behind-1to1-responds", natSwanCase{nat: oneToOne, gresecInside: true, gresecInitiates: false}},
		{"always-without-nat", natSwanCase{gresecInitiates: true, ipsecExtra: "udp_encap = \"always\"\n", conn: swan.Conn{Encap: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.wantEncap, tc.c.v1 = true, true
			ns := startNATSwan(t, tc.c)
			spi := ns.checkV1(t, tc.c, "")
			if out, err := ns.charon.Swanctl("--rekey", "--child", "gre"); err != nil {
				t.Fatalf("swanctl --rekey: %v\n%s", err, out)
			}
			ns.checkV1(t, tc.c, spi)
		})
	}
}
