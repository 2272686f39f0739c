package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gresec/gresec/bench"
)

func cmdBench(args []string) error {
	fs := newFlags("bench", "[-rounds N] [-seconds N] [-esp T1,T2...] [-wireguard-go PATH] [-out DIR]")
	rounds := fs.Int("rounds", 3, "rounds per path (the table shows medians)")
	secs := fs.Int("seconds", 5, "length of each iperf3 run in `seconds`")
	wg := fs.String("wireguard-go", "", "wireguard-go binary to compare with (needs `wg` from wireguard-tools); empty skips it")
	baseline := fs.String("baseline", "", "another gresec `binary` (an older build) measured in the same rounds, as path gresec-baseline")
	espList := fs.String("esp", "", "static-key ESP `transforms` measured beside the default, comma-separated strongSwan names (\"aes256-sha256,chacha20poly1305\"), each as path gresec-NAME")
	out := fs.String("out", "results", "`directory` for results.csv and chart.svg (a timestamped folder inside)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, TUN, raw sockets): run it with sudo")
	}
	if *rounds < 1 || *secs < 1 {
		return errors.New("-rounds and -seconds must be at least 1")
	}
	var transforms []string
	for _, t := range strings.Split(*espList, ",") {
		if t = strings.TrimSpace(t); t != "" {
			transforms = append(transforms, t)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Printf("one TCP stream (iperf3) between two network namespaces, %d × %d s per path\n", *rounds, *secs)
	results, err := bench.Run(bench.Options{Gresec: self, Baseline: *baseline, WireguardGo: *wg, ESP: transforms, Rounds: *rounds, Duration: time.Duration(*secs) * time.Second, Out: os.Stdout})
	if err != nil {
		return err
	}
	sums := bench.Summarize(results)
	fmt.Println()
	bench.WriteTable(os.Stdout, sums)
	dir := filepath.Join(*out, time.Now().UTC().Format("20060102T150405Z"))
	if err := bench.Save(dir, results, sums); err != nil {
		return err
	}
	fmt.Printf("\nresults: %s (results.csv, chart.svg)\n", dir)
	return nil
}
