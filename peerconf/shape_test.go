package peerconf

import (
	"strings"
	"testing"
)

// TestShapesRefusedWhereNotWritten: each peer's writer refuses the shapes
// it does not know by name instead of writing a configuration that would
// not match.
func TestShapesRefusedWhereNotWritten(t *testing.T) {
	for _, tc := range []struct {
		config string
		peers  []Peer
	}{
		{"tunnelgre", []Peer{OpenBSD}},
		{"vti", []Peer{OpenBSD}},
		{"ipip", []Peer{OpenBSD, CiscoIOS}},
		// FreeBSD's refusal of IKEv2 comes first on the IKEv2 configs.
		{"tunnelgre-static", []Peer{FreeBSD}},
		{"vti-static", []Peer{FreeBSD}},
	} {
		c := parseTestdata(t, tc.config)
		for _, p := range tc.peers {
			_, err := Generate(c, Options{Peer: p})
			if err == nil || !strings.Contains(err.Error(), "only so far") || !strings.Contains(err.Error(), string(c.Encap)) {
				t.Errorf("%s --for %s: %v", tc.config, p, err)
			}
		}
	}
}
