package peerconf

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gresec/gresec/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// parseTestdata reads testdata/name.toml as if it were the installed
// /etc/gresec/gresec.toml (Parse: the PSK files it names need not exist).
func parseTestdata(t testing.TB, name string) *config.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".toml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse("/etc/gresec/gresec.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func render(t testing.TB, c *config.Config, o Options) string {
	t.Helper()
	out, err := Generate(c, o)
	if err != nil {
		t.Fatalf("Generate(%s): %v", o.Peer, err)
	}
	var b bytes.Buffer
	if _, err := out.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// goldenCases cover every --for value on seed 000's settings (with
// static keys for linux, whose kernel has no IKE), plain GRE, and a
// responder over IPv6 with everything non-default.
var goldenCases = []struct {
	config string
	peer   Peer
}{
	{"seed000", StrongSwan},
	{"seed000", OpenBSD},
	{"seed000", CiscoIOS},
	{"seed000-static", Linux},
	{"seed000-none", Linux},
	{"seed000-none", OpenBSD},
	{"seed000-none", CiscoIOS},
	{"responder-v6", StrongSwan},
	{"responder-v6", CiscoIOS},
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		name := tc.config + "." + string(tc.peer)
		t.Run(name, func(t *testing.T) {
			got := render(t, parseTestdata(t, tc.config), Options{Peer: tc.peer})
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./peerconf -run TestGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (review, then -update):\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	in := func(l string, ls []string) bool {
		for _, x := range ls {
			if x == l {
				return true
			}
		}
		return false
	}
	var b strings.Builder
	for _, l := range w {
		if !in(l, g) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if !in(l, w) {
			b.WriteString("+ " + l + "\n")
		}
	}
	if b.Len() == 0 {
		return "(same lines, different order or count)"
	}
	return b.String()
}
