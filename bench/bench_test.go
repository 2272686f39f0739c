package bench

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
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
