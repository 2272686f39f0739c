// Package natlab builds a NAT for tests: a private site behind a router
// namespace that translates its addresses with nftables, and a public site
// on the router's other side.
//
//	inside (private)            router                     outside (public)
//	198.18.1.2/24 ── veth ── 198.18.1.1/24 | 198.18.0.254/24 ── veth ── 198.18.0.2/24
//
// Two kinds of NAT, as real sites meet them:
//   - Masquerade: the home or branch router (and a container's bridge):
//     the private source becomes the router's outside address, and the
//     source port may change (RandomPorts makes it change every time, as a
//     carrier-grade NAT does). Nothing reaches the inside unless it answers
//     traffic the inside sent.
//   - OneToOne: the cloud VM's 1:1 NAT: the inside host owns a public
//     address (Public) on the router; ports are kept, and the outside can
//     start a connection to that address.
//
// The router counts what it forwards by protocol (Forwarded), so a test can
// assert that only UDP crossed, and FlushConntrack drops every mapping, as
// a NAT reboot or a mapping time-out does.
//
// Addresses are from 198.18.0.0/15 (RFC 2544 benchmarking space). The
// namespaces are removed by Close, which a test registers with t.Cleanup.
package natlab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/gresec/gresec/internal/netns"
)

// Kind is the kind of address translation the router does.
type Kind int

const (
	// Masquerade rewrites the inside's source to the router's outside
	// address (nftables masquerade): many-to-one, inbound only as answers.
	Masquerade Kind = iota
	// OneToOne maps the inside address to Public and back (snat + dnat):
	// ports kept, reachable from the outside.
	OneToOne
)

func (k Kind) String() string {
	switch k {
	case Masquerade:
		return "masquerade"
	case OneToOne:
		return "1:1"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Options shape the lab. The zero value is a masquerading router keeping
// ports where it can, namespaces named "natlab-…".
type Options struct {
	Kind Kind
	// RandomPorts (Masquerade only) maps every new flow to a random source
	// port (nftables `masquerade random`), so UDP 500 and 4500 leave the
	// NAT on other ports, as behind a carrier-grade NAT.
	RandomPorts bool
	// Prefix starts the namespace names; default "natlab".
	Prefix string
}

// Interface names. "in"/"out" prefixes, never "bro" (ip link reads it as
// "broadcast").
const (
	InsideIf        = "veth-in"  // in the inside namespace
	RouterInsideIf  = "rt-in"    // the router's private side
	RouterOutsideIf = "rt-out"   // the router's public side
	OutsideIf       = "veth-out" // in the outside namespace
)

// Lab is a running NAT lab.
type Lab struct {
	Kind    Kind
	Inside  *netns.NS // the private site, default route via the router
	Router  *netns.NS // forwards and translates
	Outside *netns.NS // the public site, no route to the private net

	InsideAddr    netip.Prefix // 198.18.1.2/24
	RouterInside  netip.Prefix // 198.18.1.1/24
	RouterOutside netip.Prefix // 198.18.0.254/24
	OutsideAddr   netip.Prefix // 198.18.0.2/24
	// Public is the address the outside sees the inside as: RouterOutside's
	// address with Masquerade, 198.18.0.100 with OneToOne.
	Public netip.Addr
}

// Fixed addresses: one lab per set of namespaces, so no two labs collide.
var (
	insideAddr    = netip.MustParsePrefix("198.18.1.2/24")
	routerInside  = netip.MustParsePrefix("198.18.1.1/24")
	routerOutside = netip.MustParsePrefix("198.18.0.254/24")
	outsideAddr   = netip.MustParsePrefix("198.18.0.2/24")
	oneToOnePub   = netip.MustParseAddr("198.18.0.100")
)

// New builds the three namespaces, links them and starts the NAT. On error
// nothing is left behind.
func New(o Options) (l *Lab, err error) {
	if o.Kind != Masquerade && o.Kind != OneToOne {
		return nil, fmt.Errorf("natlab: unknown kind %v", o.Kind)
	}
	if o.RandomPorts && o.Kind != Masquerade {
		return nil, errors.New("natlab: RandomPorts applies to Masquerade only (1:1 NAT keeps ports)")
	}
	prefix := o.Prefix
	if prefix == "" {
		prefix = "natlab"
	}
	l = &Lab{Kind: o.Kind, InsideAddr: insideAddr, RouterInside: routerInside, RouterOutside: routerOutside, OutsideAddr: outsideAddr,
		Public: routerOutside.Addr()}
	if o.Kind == OneToOne {
		l.Public = oneToOnePub
	}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	for _, p := range []**netns.NS{&l.Inside, &l.Router, &l.Outside} {
		ns, err := netns.Create(netns.Unique(prefix))
		if err != nil {
			return l, err
		}
		*p = ns
	}
	if err := netns.Link(l.Inside, InsideIf, []netip.Prefix{insideAddr}, l.Router, RouterInsideIf, []netip.Prefix{routerInside}); err != nil {
		return l, err
	}
	if err := netns.Link(l.Router, RouterOutsideIf, []netip.Prefix{routerOutside}, l.Outside, OutsideIf, []netip.Prefix{outsideAddr}); err != nil {
		return l, err
	}
	if o.Kind == OneToOne {
		// The public address lives on the router's outside interface, so
		// the router answers ARP for it.
		if _, err := l.Router.Run("ip", "addr", "add", oneToOnePub.String()+"/32", "dev", RouterOutsideIf); err != nil {
			return l, err
		}
	}
	if _, err := l.Inside.Run("ip", "route", "add", "default", "via", routerInside.Addr().String()); err != nil {
		return l, err
	}
	if _, err := l.Router.Run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		return l, err
	}
	if out, err := l.nft(l.ruleset(o)); err != nil {
		return l, fmt.Errorf("natlab: loading the NAT ruleset: %w: %s", err, out)
	}
	return l, nil
}

// ruleset is the router's nftables configuration: the translation and a
// forward chain counting what crosses, by protocol, in each direction.
func (l *Lab) ruleset(o Options) string {
	var nat string
	switch o.Kind {
	case Masquerade:
		m := "masquerade"
		if o.RandomPorts {
			m = "masquerade random"
		}
		nat = fmt.Sprintf("  chain post {\n    type nat hook postrouting priority 100;\n    oifname %q %s\n  }\n", RouterOutsideIf, m)
	case OneToOne:
		nat = fmt.Sprintf("  chain pre {\n    type nat hook prerouting priority -100;\n    iifname %q ip daddr %s dnat to %s\n  }\n"+
			"  chain post {\n    type nat hook postrouting priority 100;\n    oifname %q ip saddr %s snat to %s\n  }\n",
			RouterOutsideIf, oneToOnePub, insideAddr.Addr(), RouterOutsideIf, insideAddr.Addr(), oneToOnePub)
	}
	var fwd strings.Builder
	fwd.WriteString("table ip natlab-count {\n")
	for _, c := range counterNames {
		fmt.Fprintf(&fwd, "  counter %s { }\n", c)
	}
	fwd.WriteString("  chain forwarded {\n    type filter hook forward priority 0; policy accept;\n")
	for _, dir := range []struct{ name, iif string }{{"out", RouterInsideIf}, {"in", RouterOutsideIf}} {
		fmt.Fprintf(&fwd, "    iifname %q meta l4proto udp counter name udp_%s\n", dir.iif, dir.name)
		fmt.Fprintf(&fwd, "    iifname %q meta l4proto esp counter name esp_%s\n", dir.iif, dir.name)
		fmt.Fprintf(&fwd, "    iifname %q meta l4proto icmp counter name icmp_%s\n", dir.iif, dir.name)
		fmt.Fprintf(&fwd, "    iifname %q meta l4proto != { udp, esp, icmp } counter name other_%s\n", dir.iif, dir.name)
	}
	fwd.WriteString("  }\n}\n")
	return "table ip natlab-nat {\n" + nat + "}\n" + fwd.String()
}

var counterNames = []string{"udp_out", "esp_out", "icmp_out", "other_out", "udp_in", "esp_in", "icmp_in", "other_in"}

// nft loads ruleset into the router from a temporary file.
func (l *Lab) nft(ruleset string) (string, error) {
	f, err := os.CreateTemp("", "natlab-*.nft")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(ruleset); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return l.Router.Run("nft", "-f", f.Name())
}

// Forwarded is what the router forwarded, in packets, by protocol and
// direction ("out": inside to outside, "in": outside to inside), counted
// before translation.
type Forwarded struct {
	UDPOut, ESPOut, ICMPOut, OtherOut uint64
	UDPIn, ESPIn, ICMPIn, OtherIn     uint64
}

// Forwarded reads the router's counters.
func (l *Lab) Forwarded() (Forwarded, error) {
	var f Forwarded
	dst := map[string]*uint64{"udp_out": &f.UDPOut, "esp_out": &f.ESPOut, "icmp_out": &f.ICMPOut, "other_out": &f.OtherOut,
		"udp_in": &f.UDPIn, "esp_in": &f.ESPIn, "icmp_in": &f.ICMPIn, "other_in": &f.OtherIn}
	out, err := l.Router.Run("nft", "list", "counters", "table", "ip", "natlab-count")
	if err != nil {
		return f, err
	}
	return f, parseCounters(out, dst)
}

// parseCounters reads `nft list counters` output:
//
//	counter udp_out {
//		packets 12 bytes 3456
//	}
func parseCounters(out string, dst map[string]*uint64) error {
	var name string
	seen := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "counter":
			name = f[1]
		case len(f) >= 2 && f[0] == "packets" && name != "":
			p, ok := dst[name]
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return fmt.Errorf("natlab: counter %s: %q: %w", name, line, err)
			}
			*p = n
			seen++
			name = ""
		}
	}
	if seen != len(dst) {
		return fmt.Errorf("natlab: %d of %d counters in nft output:\n%s", seen, len(dst), out)
	}
	return nil
}

// FlushConntrack drops every connection-tracking entry in the router, so
// the next packet of each flow gets a new mapping (with RandomPorts, a new
// port), as after a NAT reboot or a mapping time-out. Returns the number of
// entries removed.
func (l *Lab) FlushConntrack() (int, error) {
	var n int
	err := l.Router.Do(func() error {
		// The flush itself is one netlink request; the count is for the
		// test's log (it shows there was a mapping to lose).
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		n = len(flows)
		return netlink.ConntrackTableFlush(netlink.ConntrackTable)
	})
	return n, err
}

// Mappings lists the router's UDP translations as "inside:port -> public:port
// => remote:port", for assertions and failure messages.
func (l *Lab) Mappings() ([]string, error) {
	var out []string
	err := l.Router.Do(func() error {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, f := range flows {
			if f.Forward.Protocol != 17 {
				continue
			}
			// Forward: inside -> remote as sent; Reverse: remote -> what the
			// reply is addressed to, which is the public side of the mapping.
			out = append(out, fmt.Sprintf("%s:%d -> %s:%d => %s:%d",
				f.Forward.SrcIP, f.Forward.SrcPort, f.Reverse.DstIP, f.Reverse.DstPort, f.Forward.DstIP, f.Forward.DstPort))
		}
		return nil
	})
	return out, err
}

// Close removes the namespaces. End the processes running in them first
// (a process keeps its namespace alive). Safe on a partly built lab and
// more than once.
func (l *Lab) Close() error {
	var errs []error
	for _, p := range []**netns.NS{&l.Inside, &l.Router, &l.Outside} {
		if *p != nil {
			errs = append(errs, (*p).Delete())
			*p = nil
		}
	}
	return errors.Join(errs...)
}
