// Command gresec is a userspace GRE-over-IPsec VPN endpoint.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
)

type command struct {
	summary string
	run     func(args []string) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"up":          {"run a tunnel in the foreground until SIGINT/SIGTERM", cmdUp},
		"status":      {"show a running tunnel's interface, SAs and counters", cmdStatus},
		"check":       {"validate a config file and print the effective settings", cmdCheck},
		"bench":       {"measure TCP throughput: bare veth, gresec and wireguard-go side by side", cmdBench},
		"keys":        {"write the live SAs' keys for Wireshark (root only)", cmdKeys},
		"peer-config": {"print the matching configuration for the other end", cmdPeerConfig},
		"lab":         {"bring up a two-site tunnel in network namespaces, test it and tear it down", cmdLab},
		"version":     {"print the version", cmdVersion},
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "gresec: a userspace GRE-over-IPsec (ESP; IKEv2, IKEv1) VPN endpoint\n\nUsage: gresec <command> [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'gresec <command> -h' for a command's flags.\n")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		usage()
		return
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "gresec: unknown command %q\n\n", name)
		usage()
		os.Exit(2)
	}
	if err := c.run(os.Args[2:]); err != nil {
		if err == flag.ErrHelp {
			return
		}
		fmt.Fprintf(os.Stderr, "gresec %s: %v\n", name, err)
		os.Exit(1)
	}
}

// newFlags makes a flag set whose -h prints the command's summary first.
func newFlags(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: gresec %s %s\n\n%s.\n\nFlags:\n", name, args, commands[name].summary)
		fs.PrintDefaults()
	}
	return fs
}

func cmdVersion(args []string) error {
	if err := newFlags("version", "").Parse(args); err != nil {
		return err
	}
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v += " " + s.Value
			}
		}
	}
	fmt.Println("gresec", v)
	return nil
}
