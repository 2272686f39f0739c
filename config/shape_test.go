package config

import (
	"fmt"
	"strings"
	"testing"
)

// TestShapes: [ipsec] mode and [tunnel] encap make the four shapes, each
// with its MTU (1500 underlay, AES-GCM: ESP 34 bytes with the padding of
// the full-size packet) and the combinations that make no sense refused,
// naming what to write instead.
func TestShapes(t *testing.T) {
	with := func(mode, encap, extra string) string {
		s := strings.Replace(good, `mode = "transport"`, `mode = "`+mode+`"`, 1)
		return strings.Replace(s, "mss_clamp = true", "mss_clamp = true\nencap = \""+encap+"\"\n"+extra, 1)
	}
	v6 := func(s string) string {
		s = strings.Replace(s, `local = "198.18.0.1"`, `local = "2001:db8::1"`, 1)
		return strings.Replace(s, `remote = "198.18.0.2"`, `remote = "2001:db8::2"`, 1)
	}
	for _, tc := range []struct {
		mode, encap string
		shape       Shape
		mtu4, mtu6  int
		overhead4   int
	}{
		{"transport", "gre", ShapeGRE, 1442, 1422, 58},
		{"tunnel", "gre", ShapeGRETunnel, 1422, 1382, 78},
		{"tunnel", "none", ShapeVTI, 1446, 1426, 54},
		{"transport", "ipip", ShapeIPIP, 1446, 1426, 54},
	} {
		for _, v := range []bool{false, true} {
			text := with(tc.mode, tc.encap, "")
			want := tc.mtu4
			if v {
				text, want = v6(text), tc.mtu6
			}
			c, err := Parse("s.toml", []byte(text))
			if err != nil {
				t.Errorf("%s+%s: %v", tc.mode, tc.encap, err)
				continue
			}
			if c.Shape() != tc.shape || string(c.Mode) != tc.mode || string(c.Encap) != tc.encap {
				t.Errorf("%s+%s: shape %v (%s, %s)", tc.mode, tc.encap, c.Shape(), c.Mode, c.Encap)
			}
			if c.MTU != want {
				t.Errorf("%s+%s (IPv6 underlay %v): MTU %d, want %d", tc.mode, tc.encap, v, c.MTU, want)
			}
			if !v && c.Overhead() != tc.overhead4 {
				t.Errorf("%s+%s: overhead %d, want %d", tc.mode, tc.encap, c.Overhead(), tc.overhead4)
			}
		}
	}
	c, err := Parse("s.toml", []byte(strings.Replace(good, "mode = \"transport\"\n", "", 1)))
	if err != nil || c.Shape() != ShapeGRE || c.Mode != ModeTransport || c.Encap != EncapGRE {
		t.Errorf("defaults: %v, %v", c, err)
	}

	for _, tc := range []struct{ text, want string }{
		{strings.Replace(with("transport", "gre", ""), `encap = "gre"`, `encap = "gif"`, 1), `tunnel.encap: expected "gre", "ipip" or "none", got "gif"`},
		{with("transport", "none", ""), `tunnel.encap: "none" leaves nothing to carry the inner packets in transport mode; expected mode = "tunnel"`},
		{with("tunnel", "ipip", ""), `tunnel.encap: "ipip" inside tunnel-mode ESP would wrap each packet in two IP headers`},
		{with("tunnel", "none", "gre_key = 5"), `tunnel.gre_key: given, but tunnel.encap is "none": there is no GRE header`},
		{with("transport", "ipip", `keepalive = "10s"`), `tunnel.keepalive: given, but tunnel.encap is "ipip": keepalives are GRE packets`},
		{noStatic(with("transport", "ipip", ""), `keying = "none"`), `tunnel.encap: "ipip" needs ESP, but ipsec.keying is "none"`},
		{noStatic(with("tunnel", "gre", ""), `keying = "none"`), `ipsec.mode: "tunnel" is an ESP mode, but ipsec.keying is "none"`},
	} {
		_, err := Parse("s.toml", []byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v\nwant %q", err, tc.want)
		}
	}
	// A change of shape is named by the reload diff (the tunnel refuses
	// it without a restart: tunnel/reload.go).
	a, _ := Parse("s.toml", []byte(good))
	b, err := Parse("s.toml", []byte(with("tunnel", "none", "")))
	if err != nil {
		t.Fatal(err)
	}
	if ch := Changed(Diff(a, a.Digests(), b)); !ch.Has(TunnelEncap) || !ch.Has(IPsecMode) {
		t.Errorf("diff %v, want tunnel.encap and ipsec.mode", ch)
	}
	// Tunnel mode with a GRE keepalive is what IOS builds (a crypto map
	// over a GRE tunnel with `keepalive`): allowed.
	if _, err := Parse("s.toml", []byte(with("tunnel", "gre", `keepalive = "10s"`))); err != nil {
		t.Errorf("tunnel+gre with keepalive: %v", err)
	}
}

// noStatic turns the good config into one of the given keying without
// the [static] section.
func noStatic(s, keying string) string {
	s = strings.Replace(s, `keying = "static"`, keying, 1)
	return s[:strings.Index(s, "[static]")]
}

// TestVTISelectors: [ike] local_ts and remote_ts default to everything of
// both families for a VTI, take prefixes, and are refused for the shapes
// whose selectors are the underlay addresses.
func TestVTISelectors(t *testing.T) {
	vti := strings.Replace(ikeBase, "[ipsec]", "encap = \"none\"\n[ipsec]\nmode = \"tunnel\"", 1)
	c, err := Parse("v.toml", []byte(vti))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c.IKE.LocalTS, c.IKE.RemoteTS) != "[0.0.0.0/0 ::/0] [0.0.0.0/0 ::/0]" || c.Shape() != ShapeVTI {
		t.Errorf("defaults %v %v, shape %v", c.IKE.LocalTS, c.IKE.RemoteTS, c.Shape())
	}
	c, err = Parse("v.toml", []byte(vti+"local_ts = [\"198.19.0.1/16\"]\nremote_ts = [\"2001:db8:20::/48\", \"198.20.0.0/16\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c.IKE.LocalTS, c.IKE.RemoteTS) != "[198.19.0.0/16] [2001:db8:20::/48 198.20.0.0/16]" {
		t.Errorf("configured %v %v", c.IKE.LocalTS, c.IKE.RemoteTS)
	}
	for _, tc := range []struct{ text, want string }{
		{vti + "local_ts = [\"198.19.0.0\"]\n", `ike.local_ts[0]: expected a prefix such as "0.0.0.0/0"`},
		{vti + "remote_ts = []\n", `ike.remote_ts: empty`},
		{ikeBase + "local_ts = [\"0.0.0.0/0\"]\n", `ike.local_ts: given, but the tunnel is GRE in transport-mode ESP`},
	} {
		if _, err := Parse("v.toml", []byte(tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v\nwant %q", err, tc.want)
		}
	}
	// Every shape is negotiable: tunnel-mode GRE and IP-in-IP too.
	for _, me := range [][2]string{{"tunnel", "gre"}, {"transport", "ipip"}} {
		text := strings.Replace(ikeBase, "[ipsec]", "encap = \""+me[1]+"\"\n[ipsec]\nmode = \""+me[0]+"\"", 1)
		if _, err := Parse("v.toml", []byte(text)); err != nil {
			t.Errorf("%s+%s with ikev2: %v", me[0], me[1], err)
		}
	}
}
