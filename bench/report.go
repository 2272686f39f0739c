package bench

import (
	"encoding/csv"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
)

// WriteTable prints medians with ratios against bare veth and, when
// measured, against wireguard-go.
func WriteTable(w io.Writer, sums []Summary) {
	base := map[string]float64{}
	for _, s := range sums {
		base[s.Path] = s.Gbps
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tGbit/s (median)\tCPU s/GB\ttunnel CPU s/GB\tvs veth\tvs wireguard-go\tRSS idle MB\tRSS peak MB\trounds\t")
	for _, s := range sums {
		vsWG := "-"
		if wg := base[PathWireguard]; wg > 0 {
			vsWG = fmt.Sprintf("%.2f×", s.Gbps/wg)
		}
		idle, peak, tcpu := "-", "-", "-"
		if s.TunnelCPUSecPerGB > 0 {
			tcpu = fmt.Sprintf("%.2f", s.TunnelCPUSecPerGB)
		}
		if s.RSSPeakMB > 0 {
			idle, peak = fmt.Sprintf("%.1f", s.RSSIdleMB), fmt.Sprintf("%.1f", s.RSSPeakMB)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%s\t%.2f×\t%s\t%s\t%s\t%d\t\n", s.Path, s.Gbps, s.CPUSecPerGB, tcpu, s.Gbps/base[PathVeth], vsWG, idle, peak, s.Rounds)
	}
	tw.Flush()
}

// Save writes results.csv and chart.svg into dir.
func Save(dir string, results []Result, sums []Summary) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "results.csv"))
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	cw.Write([]string{"path", "round", "gbit_per_s", "cpu_s_per_gb", "tunnel_cpu_s_per_gb", "gb_received", "rss_idle_mb", "rss_peak_mb"})
	for _, r := range results {
		cw.Write([]string{r.Path, strconv.Itoa(r.Round), fmt.Sprintf("%.3f", r.Gbps), fmt.Sprintf("%.3f", r.CPUSecPerGB), fmt.Sprintf("%.3f", r.TunnelCPUSecPerGB), fmt.Sprintf("%.3f", r.BytesMovedGB), fmt.Sprintf("%.1f", r.RSSIdleMB), fmt.Sprintf("%.1f", r.RSSPeakMB)})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "chart.svg"), []byte(Chart(sums)), 0o644)
}

// Chart is a horizontal bar chart of the medians, as SVG.
func Chart(sums []Summary) string {
	const (
		width, left, barH, gap, top = 640, 130, 28, 14, 40
	)
	max := 0.0
	for _, s := range sums {
		if s.Gbps > max {
			max = s.Gbps
		}
	}
	h := top + len(sums)*(barH+gap) + 20
	out := fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`+"\n", width, h)
	out += `<rect width="100%" height="100%" fill="white"/>` + "\n"
	out += fmt.Sprintf(`<text x="10" y="22" font-size="15">TCP, one stream (iperf3), median Gbit/s</text>` + "\n")
	colors := map[string]string{PathVeth: "#9e9e9e", PathGresec: "#1565c0", PathGresecUDP: "#2e7d32", PathBaseline: "#90caf9", PathWireguard: "#88171a"}
	for i, s := range sums {
		y := top + i*(barH+gap)
		w := 1.0
		if max > 0 {
			w = s.Gbps / max * float64(width-left-110)
		}
		c := colors[s.Path]
		if c == "" {
			c = "#555"
		}
		out += fmt.Sprintf(`<text x="10" y="%d">%s</text>`+"\n", y+barH/2+5, html.EscapeString(s.Path))
		out += fmt.Sprintf(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y, w, barH, c)
		out += fmt.Sprintf(`<text x="%.1f" y="%d">%.2f</text>`+"\n", float64(left)+w+6, y+barH/2+5, s.Gbps)
	}
	return out + "</svg>\n"
}
