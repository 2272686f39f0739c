package bench

import (
	"bytes"
	"encoding/xml"
	"os"
	"strings"
	"testing"
	"time"
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
