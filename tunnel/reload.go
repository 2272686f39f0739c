package tunnel

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/esp"
)

// restartOnly are the settings a running tunnel cannot take over: they
// name its device, its sockets or its privileges, or the pumps read them
// without locks (the MTU, the MSS clamp, the GRE key, the shape).
var restartOnly = config.FieldsOf(
	config.TunnelInterface, config.TunnelLocal, config.TunnelRemote, config.TunnelMTU, config.TunnelMSSClamp,
	config.TunnelGREKey, config.TunnelEncap, config.IPsecKeying, config.IPsecMode, config.IPsecUDPEncap, config.IPsecUDPPort,
	config.IPsecNATKeepalive,
	config.ControlSocket, config.MetricsListen, config.DaemonUser)

// Reload applies next, the new validated config of this tunnel, given the
// changes config.Diff found. It refuses (changing nothing) when a key
// needs a restart. Otherwise: addresses are added and removed on the
// interface; new static keys take over at once (the new inbound SA is
// installed before the outbound one switches); new IKE settings restart
// the IKE engine, which deletes its SAs and negotiates with the new ones;
// new keepalive settings restart the keepalive count.
// A new replay window takes effect through the same two paths: the SAs
// are created with it. The log level is the caller's.
func (t *Tunnel) Reload(next *config.Config, changes []config.Change) error {
	changed := config.Changed(changes)
	if refused := changed & restartOnly; refused != 0 {
		return fmt.Errorf("%s: %s changed: a restart is needed for that; still running the previous configuration",
			next.Path, refused)
	}
	if next.AnyRemote && changed.Has(config.IKERemoteID) {
		// The shared IKE port finds a dynamic tunnel by its identity
		// (demux.JoinAny), fixed when the tunnel joined.
		return fmt.Errorf("%s: ike.remote_id of a tunnel with remote = \"any\" changed: a restart is needed for that; still running the previous configuration", next.Path)
	}
	if changed.Has(config.TunnelAddresses) {
		t.addrMu.Lock()
		var gone []netip.Prefix
		for _, p := range t.addrs {
			if !slices.Contains(next.Addresses, p) {
				gone = append(gone, p)
			}
		}
		err := t.dev.SetAddresses(next.Addresses)
		if err == nil {
			err = t.dev.RemoveAddresses(gone)
		}
		if err == nil {
			t.addrs = slices.Clone(next.Addresses)
		}
		t.addrMu.Unlock()
		if err != nil {
			return fmt.Errorf("%s: tunnel.addresses: %w", next.Path, err)
		}
	}
	if changed.Any(config.FieldsOf(config.TunnelKeepalive, config.TunnelKeepaliveRetries)) {
		t.ka.set(next.Keepalive, next.KeepaliveRetries)
	}
	sas := config.FieldsOf(config.IPsecReplayWindow)
	switch next.Keying {
	case config.KeyingStatic:
		if changed.Any(config.StaticFields | sas) {
			return t.replaceStatic(next)
		}
	case config.KeyingIKEv2, config.KeyingIKEv1:
		if changed.Any(config.IKEFields | sas) {
			t.ikeMu.Lock()
			t.ikeCfg = ikeSettings{ike: next.IKE, replayWindow: next.ReplayWindow}
			t.ikeMu.Unlock()
			t.restartIKE()
		}
	}
	return nil
}

// replaceStatic installs next's static SAs, inbound first, and retires
// the old inbound one: the peer is being re-keyed by hand too.
func (t *Tunnel) replaceStatic(next *config.Config) error {
	in, out, err := newStaticSAs(next.Path, next.Static, next.ReplayWindow)
	if err != nil {
		return err
	}
	t.staticMu.Lock()
	defer t.staticMu.Unlock()
	old := t.static
	t.sadb.AddInbound(in)
	t.sadb.SetOutbound(out)
	if old.spiIn != next.Static.SPIIn {
		t.sadb.RemoveInbound(old.spiIn)
	}
	t.static = newStaticKeys(next)
	clear(old.in)
	clear(old.out)
	return nil
}

// staticKeys are the daemon's one copy of the manual keys, kept for
// `gresec keys` (the SAs' ciphers hold them in expanded form anyway).
type staticKeys struct {
	spiIn, spiOut uint32
	tr            esp.Transform
	in, out       []byte
}

func newStaticKeys(c *config.Config) staticKeys {
	return staticKeys{spiIn: c.Static.SPIIn, spiOut: c.Static.SPIOut, tr: c.Static.Transform,
		in: bytes.Clone(c.Static.KeyIn), out: bytes.Clone(c.Static.KeyOut)}
}
