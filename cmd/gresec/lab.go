package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/control"
	"github.com/gresec/gresec/internal/netns"
)

// The lab's two sites. Underlay and tunnel addresses come from the ranges
// reserved for benchmarking (RFC 2544) and documentation (RFC 3849).
var labSites = [2]struct {
	name, veth       string
	underlay         netip.Prefix
	tunnel4, tunnel6 netip.Prefix
}{
	{"a", "veth-a", netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("198.19.0.0/31"), netip.MustParsePrefix("2001:db8:19::/127")},
	{"b", "veth-b", netip.MustParsePrefix("198.18.0.2/24"), netip.MustParsePrefix("198.19.0.1/31"), netip.MustParsePrefix("2001:db8:19::1/127")},
}

func cmdLab(args []string) error {
	fs := newFlags("lab", "[-keying ikev2|ikev1|static|none] [-mode transport|tunnel] [-encap gre|ipip|none] [-seconds N] [-spokes N]")
	keying := fs.String("keying", "ikev2", "`keying`: ikev2 (IKEv2 with a random PSK), ikev1 (IKEv1 Main + Quick Mode, aes128-sha1-modp2048, as an IOS crypto map), static (ESP with random keys) or none (plain GRE)")
	mode := fs.String("mode", "transport", "ESP `mode`: transport or tunnel ([ipsec] mode)")
	encap := fs.String("encap", "gre", "`encap`sulation: gre, ipip or none (a VTI, with -mode tunnel) ([tunnel] encap)")
	secs := fs.Int("seconds", 3, "length of the TCP test in `seconds`, when iperf3 is installed (0 skips it)")
	spokes := fs.Int("spokes", 0, "instead of two sites: a hub daemon with this `many` tunnels to as many spoke sites (keying ikev2 or static)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *keying != "ikev2" && *keying != "ikev1" && *keying != "static" && *keying != "none" {
		return fmt.Errorf("-keying: expected ikev2, ikev1, static or none, got %q", *keying)
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, TUN, raw sockets): run it with sudo")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if *spokes > 0 {
		return runHubLab(self, *keying, *spokes)
	}
	l := &lab{self: self, keying: *keying, mode: *mode, encap: *encap}
	defer l.teardown()
	return l.run(*secs)
}

// labIKEv1Suite is the lab's IKEv1 proposal for both phases: IOS's
// encryption aes, hash sha, group 14 and esp-aes esp-sha-hmac with PFS.
const labIKEv1Suite = "aes128-sha1-modp2048"

type lab struct {
	self, keying string
	mode, encap  string // checked by the sites' config: gresec up names a bad pair
	dir          string
	ns           [2]*netns.NS
	procs        [2]*netns.Proc
	cfgs         [2]string
	step         int
}

func (l *lab) say(format string, args ...any) {
	l.step++
	fmt.Printf("[%d] %s\n", l.step, fmt.Sprintf(format, args...))
}

func (l *lab) run(secs int) error {
	var err error
	l.say("creating two sites (network namespaces) joined by veth: %s <-> %s", labSites[0].underlay, labSites[1].underlay)
	for i, s := range labSites {
		if l.ns[i], err = netns.Create(netns.Unique("gresec-lab-" + s.name)); err != nil {
			return err
		}
	}
	if err := netns.Link(l.ns[0], labSites[0].veth, []netip.Prefix{labSites[0].underlay},
		l.ns[1], labSites[1].veth, []netip.Prefix{labSites[1].underlay}); err != nil {
		return err
	}

	if l.dir, err = os.MkdirTemp("", "gresec-lab-"); err != nil {
		return err
	}
	if err := l.writeConfigs(); err != nil {
		return err
	}
	// A -mode/-encap pair that makes no sense: say so now, not after
	// waiting for gresec to come up.
	for _, c := range l.cfgs {
		if _, err := config.Load(c); err != nil {
			return err
		}
	}
	l.say("starting gresec in each site (keying %s, mode %s, encap %s); configs in %s", l.keying, l.mode, l.encap, l.dir)
	for i := range labSites {
		if l.procs[i], err = l.ns[i].Start(l.self, "up", "-c", l.cfgs[i]); err != nil {
			return err
		}
	}
	for i := range labSites {
		sock := filepath.Join(l.dir, labSites[i].name+".sock")
		up := netns.WaitFor(10*time.Second, func() bool {
			_, err := control.Query(sock, "status")
			return err == nil
		})
		if !up {
			return fmt.Errorf("site %s: gresec did not come up within 10 s; its output:\n%s", labSites[i].name, l.procs[i].Out)
		}
	}
	if l.keying == "ikev1" {
		l.say("IKEv1: site a initiates Main Mode + Quick Mode (%s, PSK, PFS), site b responds", labIKEv1Suite)
		for i := range labSites {
			sock := filepath.Join(l.dir, labSites[i].name+".sock")
			ok := netns.WaitFor(15*time.Second, func() bool {
				raw, err := control.Query(sock, "status")
				var st struct {
					IKEv1 *struct {
						Phase2 []json.RawMessage `json:"ipsec_sas"`
					} `json:"ikev1"`
					Outbound *struct{} `json:"outbound_sa"`
				}
				return err == nil && json.Unmarshal(raw, &st) == nil && st.IKEv1 != nil && len(st.IKEv1.Phase2) > 0 && st.Outbound != nil
			})
			if !ok {
				return fmt.Errorf("site %s: IKEv1 phase 2 SA not installed within 15 s; output:\n%s", labSites[i].name, l.procs[i].Out)
			}
		}
		fmt.Println("    ISAKMP SA and IPsec SA established on both sites")
	}
	if l.keying == "ikev2" {
		l.say("IKEv2: site a initiates (aes256gcm16-prfsha384-ecp384, PSK), site b responds")
		for i := range labSites {
			sock := filepath.Join(l.dir, labSites[i].name+".sock")
			var last string
			ok := netns.WaitFor(15*time.Second, func() bool {
				raw, err := control.Query(sock, "status")
				var st struct {
					IKE *struct {
						State     string `json:"state"`
						LastError string `json:"last_error"`
					} `json:"ike"`
					Outbound *struct{} `json:"outbound_sa"`
				}
				if err != nil || json.Unmarshal(raw, &st) != nil || st.IKE == nil {
					return false
				}
				last = st.IKE.State + " " + st.IKE.LastError
				return st.IKE.State == "established" && st.Outbound != nil
			})
			if !ok {
				return fmt.Errorf("site %s: IKE SA not established within 15 s (%s); output:\n%s", labSites[i].name, last, l.procs[i].Out)
			}
		}
		fmt.Println("    IKE SA and CHILD_SA established on both sites")
	}

	l.say("pinging across the tunnel, IPv4 and IPv6, both directions")
	for i := range labSites {
		peer := labSites[1-i]
		for _, dst := range []netip.Addr{peer.tunnel4.Addr(), peer.tunnel6.Addr()} {
			out, err := l.ns[i].RunTimeout(20*time.Second, "ping", "-c", "5", "-i", "0.2", "-W", "2", dst.String())
			fmt.Print(indent(lastLines(out, 2)))
			if err != nil {
				return fmt.Errorf("site %s: ping %s across the tunnel failed: %w", labSites[i].name, dst, err)
			}
		}
	}

	if _, err := exec.LookPath("iperf3"); err == nil && secs > 0 {
		l.say("TCP, one stream, %d s each (iperf3, site a -> site b): bare veth, then through the tunnel", secs)
		bare, err := l.iperf(labSites[1].underlay.Addr(), secs)
		if err != nil {
			return err
		}
		tunneled, err := l.iperf(labSites[1].tunnel4.Addr(), secs)
		if err != nil {
			return err
		}
		fmt.Printf("    bare veth      %6.0f Mbit/s\n    gresec tunnel  %6.0f Mbit/s  (%.2f of bare veth, same run)\n", bare, tunneled, tunneled/bare)
	}

	for i, s := range labSites {
		l.say("gresec status in site %s", s.name)
		out, err := l.ns[i].Run(l.self, "status", "-s", filepath.Join(l.dir, s.name+".sock"))
		if err != nil {
			return err
		}
		fmt.Print(indent(out))
	}
	l.say("lab passed: tearing down")
	return nil
}

// iperf measures one TCP stream from site a to dst in site b, in Mbit/s
// as the receiver counted it.
func (l *lab) iperf(dst netip.Addr, secs int) (float64, error) {
	srv, err := l.ns[1].Start("iperf3", "-s", "-1", "-B", dst.String())
	if err != nil {
		return 0, err
	}
	defer srv.Stop(time.Second)
	time.Sleep(300 * time.Millisecond)
	out, err := l.ns[0].RunTimeout(time.Duration(secs+15)*time.Second, "iperf3", "-c", dst.String(), "-t", fmt.Sprint(secs), "-J")
	if err != nil {
		return 0, fmt.Errorf("iperf3 to %s failed: %w", dst, err)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.End.SumReceived.BitsPerSecond == 0 {
		return 0, fmt.Errorf("iperf3 to %s: no result (%v)", dst, err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e6, nil
}

func (l *lab) writeConfigs() error {
	spi := [2]uint32{0x1001, 0x1002}
	psk := make([]byte, 24)
	if _, err := rand.Read(psk); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.dir, "psk"), []byte(hex.EncodeToString(psk)+"\n"), 0o600); err != nil {
		return err
	}
	var keys [2]string
	for i := range keys {
		k := make([]byte, 36)
		if _, err := rand.Read(k); err != nil {
			return err
		}
		keys[i] = "0x" + hex.EncodeToString(k)
	}
	for i, s := range labSites {
		peer := labSites[1-i]
		c := fmt.Sprintf(`# gresec lab, site %s
[tunnel]
interface = "gre0"
local = %q
remote = %q
addresses = [%q, %q]
mss_clamp = true
encap = %q

[ipsec]
keying = %q
mode = %q
`, s.name, s.underlay.Addr(), peer.underlay.Addr(), s.tunnel4, s.tunnel6, l.encap, l.keying, l.mode)
		switch l.keying {
		case "ikev2":
			c += fmt.Sprintf("\n[ike]\ninitiate = %v\npsk_file = %q\n", i == 0, filepath.Join(l.dir, "psk"))
		case "ikev1":
			c += fmt.Sprintf("\n[ike]\ninitiate = %v\npsk_file = %q\nproposals = [%q]\nesp_proposals = [%q]\n",
				i == 0, filepath.Join(l.dir, "psk"), labIKEv1Suite, labIKEv1Suite)
		}
		if l.keying == "static" {
			c += fmt.Sprintf(`replay_window = 1024

[static]
spi_out = 0x%x
spi_in = 0x%x
key_out = %q
key_in = %q
`, spi[i], spi[1-i], keys[i], keys[1-i])
		}
		c += fmt.Sprintf("\n[control]\nsocket = %q\n", filepath.Join(l.dir, s.name+".sock"))
		l.cfgs[i] = filepath.Join(l.dir, s.name+".toml")
		if err := os.WriteFile(l.cfgs[i], []byte(c), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (l *lab) teardown() {
	for i, p := range l.procs {
		if p == nil {
			continue
		}
		if err := p.Stop(5 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "site %s: gresec: %v\n%s", labSites[i].name, err, p.Out)
		}
	}
	for _, n := range l.ns {
		if n != nil {
			n.Delete()
		}
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }
