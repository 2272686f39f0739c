package config

import (
	"strings"
	"testing"
)

// TestUDPEncap: [ipsec] udp_encap and udp_port: defaults, ESP in UDP only
// for static keys with "always" (8 bytes off the computed MTU), the
// errors, and a reload diff that names them.
func TestUDPEncap(t *testing.T) {
	static := func(lines string) string {
		return strings.Replace(good, "replay_window = 1024", "replay_window = 1024\n"+lines, 1)
	}
	ike := func(lines string) string {
		return strings.Replace(ikeBase, `keying = "ikev2"`, "keying = \"ikev2\"\n"+lines, 1)
	}
	for _, tc := range []struct {
		text     string
		encap    UDPEncap
		port     int
		inUDP    bool
		mtu      int
		overhead int
		err      string
	}{
		{static(""), UDPEncapAuto, 4500, false, 1442, 58, ""},
		{static(`udp_encap = "never"`), UDPEncapNever, 4500, false, 1442, 58, ""},
		{static(`udp_encap = "auto"`), UDPEncapAuto, 4500, false, 1442, 58, ""},
		{static(`udp_encap = "always"`), UDPEncapAlways, 4500, true, 1434, 66, ""},
		{static("udp_encap = \"always\"\nudp_port = 14500"), UDPEncapAlways, 14500, true, 1434, 66, ""},
		{ike(`udp_encap = "always"`), UDPEncapAlways, 4500, false, 1434, 66, ""}, // NAT-T floats and encapsulates: 8 bytes of UDP,
		{static(`udp_encap = "yes"`), "", 0, false, 0, 0, `ipsec.udp_encap: expected "auto", "always" or "never", got "yes"`},
		{static(`udp_encap = true`), "", 0, false, 0, 0, `ipsec.udp_encap: must be a string`},
		{static(`udp_port = 0`), "", 0, false, 0, 0, `ipsec.udp_port: expected an integer 1..65535, got 0`},
		{static(`udp_port = 65536`), "", 0, false, 0, 0, `ipsec.udp_port: expected an integer 1..65535, got 65536`},
		{ike(`udp_port = 14500`), "", 0, false, 0, 0, `ipsec.udp_port: IKE uses port 4500`},
		{static("udp_encap = \"always\"\nnat_keepalive = \"10s\""), "", 0, false, 0, 0, `ipsec.nat_keepalive: NAT keepalives belong to IKE's NAT traversal, but ipsec.keying is "static"; remove it`},
		{ike(`nat_keepalive = "10s"`), UDPEncapAuto, 4500, false, 1442, 58, ""},
		{strings.Replace(ikeBase, "keying = \"ikev2\"\n[ike]\npsk_file = \"PSK\"\n", "keying = \"none\"\nudp_encap = \"always\"\n", 1), "", 0, false, 0, 0,
			`ipsec.udp_encap: "always" needs ESP, but ipsec.keying is "none"`},
	} {
		c, err := Parse("u.toml", []byte(tc.text))
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q:\n got  %v\n want %s", tc.text, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.text, err)
		case tc.err == "" && (c.UDPEncap != tc.encap || c.UDPPort != tc.port || c.ESPInUDP() != tc.inUDP || c.MTU != tc.mtu || c.Overhead() != tc.overhead):
			t.Errorf("%q: encap %q port %d in UDP %v MTU %d overhead %d; want %q %d %v %d %d", tc.text,
				c.UDPEncap, c.UDPPort, c.ESPInUDP(), c.MTU, c.Overhead(), tc.encap, tc.port, tc.inUDP, tc.mtu, tc.overhead)
		}
	}

	old, _ := Parse("u.toml", []byte(good))
	next, err := Parse("u.toml", []byte(static(`udp_encap = "always"`)))
	if err != nil {
		t.Fatal(err)
	}
	cs := Diff(old, old.Digests(), next)
	if f := Changed(cs); f != FieldsOf(TunnelMTU, IPsecUDPEncap) {
		t.Errorf("changes %v", cs)
	}
}

// TestMSSInUDP: under IKE with udp_encap = "auto" the MTU is the raw
// path's; once a NAT floats ESP into UDP the clamp must leave 8 bytes
// more. Where the MTU already does (always), or is small enough, the
// clamp does not change.
func TestMSSInUDP(t *testing.T) {
	ike := func(lines string) string {
		return strings.Replace(ikeBase, `keying = "ikev2"`, "keying = \"ikev2\"\n"+lines, 1)
	}
	for _, tc := range []struct {
		text          string
		mss4, mss4UDP int
		mss6, mss6UDP int
	}{
		{ike(""), 1402, 1394, 1382, 1374},
		{ike(`udp_encap = "always"`), 1394, 1394, 1374, 1374},
		{strings.Replace(ike(""), "[tunnel]", "[tunnel]\nmtu = 1400", 1), 1360, 1360, 1340, 1340},
	} {
		c, err := Parse("u.toml", []byte(tc.text))
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		if c.MSS4() != tc.mss4 || c.MSSInUDP4() != tc.mss4UDP || c.MSS6() != tc.mss6 || c.MSSInUDP6() != tc.mss6UDP {
			t.Errorf("%q: MSS %d/%d in UDP %d/%d; want %d/%d in UDP %d/%d", tc.text, c.MSS4(), c.MSS6(), c.MSSInUDP4(), c.MSSInUDP6(),
				tc.mss4, tc.mss6, tc.mss4UDP, tc.mss6UDP)
		}
	}
}
