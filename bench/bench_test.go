package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/esp"
)

func TestSummarizeMediansAndRatios(t *testing.T) {
	rs := []Result{
		{Path: PathVeth, Gbps: 10}, {Path: PathGresec, Gbps: 2}, {Path: PathWireguard, Gbps: 1},
		{Path: PathVeth, Gbps: 14}, {Path: PathGresec, Gbps: 3}, {Path: PathWireguard, Gbps: 2},
		{Path: PathVeth, Gbps: 12}, {Path: PathGresec, Gbps: 100}, {Path: PathWireguard, Gbps: 1.5},
	}
	sums := Summarize(rs)
	if len(sums) != 3 || sums[0].Path != PathVeth || sums[0].Gbps != 12 || sums[1].Gbps != 3 || sums[2].Gbps != 1.5 {
		t.Fatalf("medians %+v", sums)
	}
	var b bytes.Buffer
	WriteTable(&b, sums)
	for _, want := range []string{"0.25×", "2.00×", "8.00×"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %s:\n%s", want, b.String())
		}
	}
	if err := xml.Unmarshal([]byte(Chart(sums)), new(struct{})); err != nil {
		t.Errorf("chart is not well-formed SVG: %v", err)
	}
}

// TestProcCPUSeconds: the tunnel CPU column reads /proc/PID/stat; this
// process's own time must show up there and grow while it computes.
func TestProcCPUSeconds(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here:", err)
	}
	self := []int{os.Getpid()}
	before := procCPUSeconds(self)
	x := 0
	for end := time.Now().Add(2 * time.Second); procCPUSeconds(self) <= before && time.Now().Before(end); {
		for i := range 1_000_000 {
			x += i
		}
	}
	if after := procCPUSeconds(self); after <= before {
		t.Errorf("CPU time of this process did not grow (%v -> %v, %d)", before, after, x)
	}
	if got := procCPUSeconds([]int{-1}); got != 0 {
		t.Errorf("a missing process counts %v s", got)
	}
}

// TestStaticConfigsPerTransform: the configs the ESP paths run are valid
// for each transform, mirrored (a's outbound keys are b's inbound), and
// carry the transform asked for.
func TestStaticConfigsPerTransform(t *testing.T) {
	for _, name := range []string{"", "aes256gcm16", "aes128gcm16", "aes256-sha256", "aes128-sha1", "aes256-sha512-esn", "chacha20poly1305"} {
		var tr *esp.Transform
		want := esp.DefaultTransform
		if name != "" {
			p, err := esp.ParseTransform(name)
			if err != nil {
				t.Fatal(err)
			}
			tr, want = &p, p
		}
		cfgs := staticConfigs(tr, [2]string{"/run/a.sock", "/run/b.sock"}, "")
		var cs [2]*config.Config
		for i, c := range cfgs {
			var err error
			if cs[i], err = config.Parse("bench.toml", []byte(c)); err != nil {
				t.Fatalf("%q site %d: %v\n%s", name, i, err, c)
			}
			if got := cs[i].Static.Transform; got != want {
				t.Errorf("%q site %d: transform %v, want %v", name, i, got, want)
			}
		}
		a, b := cs[0].Static, cs[1].Static
		if a.SPIOut != b.SPIIn || b.SPIOut != a.SPIIn || !bytes.Equal(a.KeyOut, b.KeyIn) || !bytes.Equal(b.KeyOut, a.KeyIn) || bytes.Equal(a.KeyOut, a.KeyIn) {
			t.Errorf("%q: the sites' SAs do not mirror each other", name)
		}
	}
}

// TestRunRefusesUnknownTransform: a misspelt -esp fails before any
// namespace is made.
func TestRunRefusesUnknownTransform(t *testing.T) {
	_, err := Run(Options{ESP: []string{"aes256-md5"}, Rounds: 1, Out: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "aes256-md5") {
		t.Fatalf("Run with -esp aes256-md5: %v", err)
	}
}
