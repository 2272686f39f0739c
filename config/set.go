package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/BurntSushi/toml"
)

// A daemon can run a set of tunnels: every *.toml file of a directory
// (one tunnel per file, each in the format of a single tunnel's file),
// with the daemon-wide settings in DaemonFile beside them.

// DaemonFile is the name, in a tunnel directory, of the file with the
// daemon-wide sections; it is not a tunnel.
const DaemonFile = "gresec.toml"

// natTPort is IKEv2's NAT traversal port (RFC 7296 §2.23).
const natTPort = 4500

// DefaultDaemonSocket is the control socket of a daemon of many tunnels.
const DefaultDaemonSocket = "/run/gresec/gresec.sock"

// daemonSections are the sections that belong to the daemon, not to one
// of its tunnels.
var daemonSections = []string{"control", "log", "metrics", "daemon"}

// Daemon holds the daemon-wide settings.
type Daemon struct {
	Path          string // "" when they are the defaults or come from a tunnel's file
	ControlSocket string
	LogLevel      string
	MetricsListen netip.AddrPort
	User          string
}

// Daemon returns the daemon-wide settings of a single tunnel's file.
func (c *Config) Daemon() Daemon {
	return Daemon{Path: c.Path, ControlSocket: c.ControlSocket, LogLevel: c.LogLevel, MetricsListen: c.MetricsListen, User: c.User}
}

// LoadDaemon reads the daemon-wide settings from path, which may hold
// only [control], [log], [metrics] and [daemon]. A missing file gives the
// defaults.
func LoadDaemon(path string) (Daemon, error) {
	d := Daemon{ControlSocket: DefaultDaemonSocket, LogLevel: "info"}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	} else if err != nil {
		return d, fmt.Errorf("config: %w", err)
	}
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return d, syntaxError(path, data, err)
	}
	for k := range doc {
		if !isDaemonSection(k) {
			return d, &Error{File: path, Key: k, Msg: "not a daemon-wide section: a tunnel of the directory has its own file (*.toml)"}
		}
	}
	if err := checkTypes(path, doc); err != nil {
		return d, err
	}
	var f file
	if _, err := toml.Decode(string(data), &f); err != nil {
		return d, &Error{File: path, Msg: "cannot be decoded"}
	}
	c := &Config{ControlSocket: d.ControlSocket, LogLevel: d.LogLevel}
	v := validator{file: path}
	v.daemonWide(&f, c)
	if v.err != nil {
		return d, v.err
	}
	d = c.Daemon()
	d.Path = path
	return d, nil
}

func isDaemonSection(k string) bool {
	for _, s := range daemonSections {
		if k == s {
			return true
		}
	}
	return false
}

// TunnelFiles lists the tunnel files of dir: every *.toml but DaemonFile,
// in name order.
func TunnelFiles(dir string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.toml"))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var out []string
	for _, p := range paths {
		if filepath.Base(p) != DaemonFile {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

// LoadDir loads the tunnels of dir and the daemon-wide settings in
// dir/gresec.toml, and checks the set (CheckSet). Every file's errors are
// reported, not only the first.
func LoadDir(dir string) (Daemon, []*Config, error) {
	d, err := LoadDaemon(filepath.Join(dir, DaemonFile))
	if err != nil {
		return d, nil, err
	}
	paths, err := TunnelFiles(dir)
	if err != nil {
		return d, nil, err
	}
	if len(paths) == 0 {
		return d, nil, fmt.Errorf("config: %s: no tunnel files (*.toml other than %s)", dir, DaemonFile)
	}
	var cs []*Config
	var errs []error
	for _, p := range paths {
		c, err := LoadTunnel(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cs = append(cs, c)
	}
	if len(errs) > 0 {
		return d, nil, errors.Join(errs...)
	}
	if err := CheckSet(cs); err != nil {
		return d, nil, err
	}
	return d, cs, nil
}

// LoadTunnel loads one tunnel of a directory: Load, refusing the
// daemon-wide sections, which belong in DaemonFile.
func LoadTunnel(path string) (*Config, error) {
	c, err := Load(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return nil, syntaxError(path, data, err)
	}
	for _, s := range daemonSections {
		if _, ok := doc[s]; ok {
			return nil, &Error{File: path, Key: s, Msg: fmt.Sprintf("daemon-wide section in a tunnel's file; it belongs in %s beside it", DaemonFile)}
		}
	}
	return c, nil
}

// checkDynamicPair: two tunnels taking dynamic peers on one local address
// are told apart by the identity the peer proves, and the IKE SA is
// negotiated before the peer names itself, by whichever of them the
// sockets hand the IKE_SA_INIT to: so they need different remote_ids and
// the same IKE proposals and NAT traversal setting.
func checkDynamicPair(a, b *Config, conflict func(a, b *Config, format string, args ...any)) {
	if a.IKE.RemoteID.Equal(b.IKE.RemoteID) {
		conflict(a, b, "both take the dynamic peer (remote = \"any\") with ike.remote_id %s on %s", a.IKE.RemoteIDText, a.Local)
	}
	if !slices.Equal(a.IKE.ProposalText, b.IKE.ProposalText) {
		conflict(a, b, "tunnels with remote = \"any\" on %s must have the same ike.proposals (the IKE SA is negotiated before the peer names its tunnel): %q and %q", a.Local, a.IKE.ProposalText, b.IKE.ProposalText)
	}
	if a.UDPEncap != b.UDPEncap {
		conflict(a, b, "tunnels with remote = \"any\" on %s must have the same ipsec.udp_encap", a.Local)
	}
}

// CheckSet refuses a set of tunnels that cannot run in one daemon: two
// with the same interface, with the same local and remote address (the
// daemon tells tunnels' IKE and unknown-SPI packets apart by them), with
// overlapping inner addresses, or static keys with the same inbound SPI
// (the daemon dispatches ESP by SPI). All conflicts are reported.
func CheckSet(cs []*Config) error {
	var errs []error
	conflict := func(a, b *Config, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s and %s: %s", a.Path, b.Path, fmt.Sprintf(format, args...)))
	}
	for i, a := range cs {
		for _, b := range cs[i+1:] {
			if a.Interface == b.Interface {
				conflict(a, b, "both use interface %s", a.Interface)
			}
			if a.Local == b.Local && a.Remote == b.Remote && !a.AnyRemote && !b.AnyRemote {
				conflict(a, b, "both run between local %s and remote %s", a.Local, a.Remote)
			}
			if a.Local == b.Local && a.AnyRemote && b.AnyRemote {
				checkDynamicPair(a, b, conflict)
			}
			for _, p := range a.Addresses {
				for _, q := range b.Addresses {
					if p.Masked().Overlaps(q.Masked()) {
						conflict(a, b, "addresses %s and %s overlap", p, q)
					}
				}
			}
			if a.Keying == KeyingStatic && b.Keying == KeyingStatic && a.Static.SPIIn == b.Static.SPIIn {
				conflict(a, b, "both receive on static.spi_in 0x%08x", a.Static.SPIIn)
			}
			// Static ESP in UDP keeps a socket of its own: it cannot share
			// its port with another such tunnel, nor take 4500 from the
			// daemon's NAT traversal socket.
			for _, x := range [][2]*Config{{a, b}, {b, a}} {
				own, other := x[0], x[1]
				if !own.ESPInUDP() || own.Local != other.Local {
					continue
				}
				if other.ESPInUDP() && own.UDPPort == other.UDPPort && own == a {
					conflict(a, b, "both need UDP port %d on %s for ESP in UDP", own.UDPPort, own.Local)
				}
				if other.NATTSocket() && own.UDPPort == natTPort {
					conflict(a, b, "UDP port %d on %s: static ESP in UDP and IKEv2 NAT traversal cannot share it (set ipsec.udp_port, or udp_encap = \"never\" for the IKEv2 tunnel)", natTPort, own.Local)
				}
			}
		}
	}
	return errors.Join(errs...)
}
