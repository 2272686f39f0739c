package peerconf

import (
	"strings"
	"testing"
)

// TestShapesRefusedWhereNotWritten: the peers whose writers know only
// GRE in transport mode refuse the other shapes by name instead of
// writing a configuration that would not match.
func TestShapesRefusedWhereNotWritten(t *testing.T) {
	for _, name := range []string{"tunnelgre", "vti", "ipip"} {
		c := parseTestdata(t, name)
		for _, p := range []Peer{OpenBSD, CiscoIOS} {
			_, err := Generate(c, Options{Peer: p})
			if err == nil || !strings.Contains(err.Error(), "writes GRE in transport mode only so far") || !strings.Contains(err.Error(), string(c.Encap)) {
				t.Errorf("%s --for %s: %v", name, p, err)
			}
		}
	}
}
