package tun

import (
	"net/netip"
	"testing"
)

func TestPeerOf(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"198.19.0.0/31", "198.19.0.1"},
		{"198.19.0.1/31", "198.19.0.0"},
		{"198.19.0.5/24", "198.19.0.1"},
		{"198.19.0.1/24", "198.19.0.1"}, // the first host is ours: no other to name
		{"198.19.0.7/32", "198.19.0.7"},
	} {
		if got := peerOf(netip.MustParsePrefix(c.in)); got.String() != c.want {
			t.Errorf("peerOf(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}
