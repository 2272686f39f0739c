package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/demux"
	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/ikev1"
)

// The tunnel is the IKE engine's data plane: it turns negotiated CHILD_SA
// keys into ESP SAs.
var (
	_ ike.DataPlane        = (*Tunnel)(nil)
	_ ike.OutboundSwitcher = (*Tunnel)(nil)
	_ ike.SequenceReporter = (*Tunnel)(nil)
	_ ike.ESPSupporter     = (*Tunnel)(nil)
)

// children maps each CHILD_SA's inbound SPI to its outbound SA, so a
// delete can retire both halves.
type children struct {
	mu  sync.Mutex
	out map[uint32]*esp.SA
	udp map[uint32]netip.AddrPort // where each sends ESP in UDP (zero: raw ESP; nat.go)
	// policy orders a VTI's outbound SAs (policy.go).
	policy vtiPolicy
}

// InstallChild makes the new SAs live: inbound first, so the peer's first
// packets on the new SA are accepted, then the outbound switch. The old
// inbound SA stays until the engine removes it (make-before-break).
func (t *Tunnel) InstallChild(k ike.ChildKeys) error {
	s := k.Suite
	tr, err := esp.TransformFromIKE(s.Encr, s.KeyBits, s.Integ, s.ESN)
	if err != nil {
		return fmt.Errorf("CHILD_SA 0x%08x: %w", k.SPIIn, err)
	}
	in, err := tr.NewSA(k.SPIIn, k.KeyIn, k.ReplayWindow)
	if err != nil {
		return fmt.Errorf("inbound SA 0x%08x: %w", k.SPIIn, err)
	}
	out, err := tr.NewSA(k.SPIOut, k.KeyOut, 0)
	if err != nil {
		return fmt.Errorf("outbound SA 0x%08x: %w", k.SPIOut, err)
	}
	sel := t.selectorsOf(k)
	in.SetSelectors(sel)
	out.SetSelectors(sel)
	t.children.mu.Lock()
	defer t.children.mu.Unlock()
	if t.children.out == nil {
		t.children.out, t.children.udp = map[uint32]*esp.SA{}, map[uint32]netip.AddrPort{}
	}
	t.children.out[k.SPIIn] = out
	t.children.udp[k.SPIIn] = k.UDPPeer
	t.sadb.AddInbound(in)
	keep := k.KeepOutbound && t.sadb.Outbound() != nil
	if !keep {
		t.choosePath(k.UDPPeer)
		t.sadb.SetOutbound(out)
	}
	if sel != nil {
		t.policyInstalled(k.SPIIn, keep)
	}
	return nil
}

// SupportsESP tells the engine which suites the esp package implements.
func (t *Tunnel) SupportsESP(s ike.Suite) bool { return config.ESPSupported(s) }

// DrainGrace is how long the inbound half of a removed CHILD_SA still
// accepts packets, as strongSwan's delete_rekeyed_delay (5 s): the peer
// may have sealed packets with it just before it switched to the new SA,
// and they can reach us after the DELETE that retired it (they sat in its
// send batch, or in our raw socket's queue while our IKE goroutine, on
// another socket, already handled the DELETE).
const DrainGrace = 5 * time.Second

// RemoveChild retires a CHILD_SA. Its outbound half stops now: if it was
// still the one sending (a delete, not a rekey), sending stops until a new
// one is installed. Its inbound half drains for t.drainGrace, then goes.
func (t *Tunnel) RemoveChild(spiIn uint32) error {
	t.children.mu.Lock()
	defer t.children.mu.Unlock()
	t.sadb.RetireInbound(spiIn, t.drainGrace)
	if out := t.children.out[spiIn]; out != nil && t.sadb.Outbound() == out {
		t.sadb.SetOutbound(nil)
	}
	delete(t.children.out, spiIn)
	delete(t.children.udp, spiIn)
	t.policyRemoved(spiIn)
	return nil
}

// SetOutbound makes the CHILD_SA with this inbound SPI the one that
// sends, so that the engine can retire the SA installed last when it
// loses a rekey collision without a pause in sending.
func (t *Tunnel) SetOutbound(spiIn uint32) error {
	t.children.mu.Lock()
	defer t.children.mu.Unlock()
	out := t.children.out[spiIn]
	if out == nil {
		return fmt.Errorf("no CHILD_SA with inbound SPI 0x%08x", spiIn)
	}
	t.choosePath(t.children.udp[spiIn])
	t.sadb.SetOutbound(out)
	t.policyPrefer(spiIn)
	return nil
}

// ChildSequence reports the last sequence number sent on a CHILD_SA.
func (t *Tunnel) ChildSequence(spiIn uint32) uint64 {
	if o := t.childOut(spiIn); o != nil {
		return o.SeqUsed()
	}
	return 0
}

// ChildBytes reports the payload bytes each half has carried.
func (t *Tunnel) ChildBytes(spiIn uint32) (in, out uint64) {
	if sa := t.sadb.Lookup(spiIn); sa != nil {
		in = sa.Stats().Bytes
	}
	if o := t.childOut(spiIn); o != nil {
		out = o.Stats().Bytes
	}
	return in, out
}

// childOut is the outbound half of the CHILD_SA with this inbound SPI.
func (t *Tunnel) childOut(spiIn uint32) *esp.SA {
	t.children.mu.Lock()
	defer t.children.mu.Unlock()
	return t.children.out[spiIn]
}

// ikeSocket is UDP port 500, opened once (before privileges are dropped)
// and read by one goroutine for the tunnel's lifetime, which hands each
// datagram to the engine running at the time (a reload restarts it).
// Engine.Offer filters and queues without blocking, so a flood costs the
// reader no more than a read and a compare per datagram.
type ikeSocket struct {
	conn *net.UDPConn
	send *demux.SendNow // conn's sending side, which never blocks
	once sync.Once
	// orphans are datagrams read while no engine ran (start, restart).
	orphans atomic.Uint64
	v1      atomic.Pointer[ikev1.Engine] // keying = "ikev1" (ikev1.go)
}

func listenIKE(local netip.Addr) (*ikeSocket, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 500)))
	if err != nil {
		return nil, fmt.Errorf("IKE socket %s port 500: %w", local, err)
	}
	// Room for a burst while the engine computes DH (best effort: the
	// kernel caps it at net.core.rmem_max).
	_ = conn.SetReadBuffer(1 << 20)
	send, err := demux.NewSendNow(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("IKE socket %s port 500: %w", local, err)
	}
	return &ikeSocket{conn: conn, send: send}, nil
}

// read delivers datagrams to the current engine until the socket closes.
func (s *ikeSocket) read(engine func() *ike.Engine) {
	buf := make([]byte, 65535)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if s.offerV1(buf[:n], from) {
			continue
		}
		if e := engine(); e != nil {
			e.Offer(buf[:n], from)
		} else {
			s.orphans.Add(1)
		}
	}
}

func (s *ikeSocket) close() { s.once.Do(func() { s.conn.Close() }) }

// WriteToUDPAddrPort sends for the engine. ikeSocket is no io.Closer on
// purpose: an engine that stops must not close the socket its successor
// uses.
func (s *ikeSocket) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	return s.send.WriteToUDPAddrPort(b, to)
}

// ikeSettings are the reloadable inputs of the IKE engine.
type ikeSettings struct {
	ike          config.IKE
	replayWindow int
}

func ikeConfig(c *config.Config, s ikeSettings) ike.Config {
	k := &s.ike
	return ike.Config{
		Local: c.Local, Remote: c.Remote, Initiate: k.Initiate,
		LocalPSK: k.LocalPSK, RemotePSK: k.RemotePSK,
		LocalID: k.LocalID, RemoteID: k.RemoteID,
		Proposals: k.Proposals, ESPProposals: k.ESPProposals,
		Lifetime: k.Lifetime, ChildLifetime: k.ChildLifetime, ChildLifetimeBytes: k.ChildLifetimeBytes,
		DPD: k.DPD, ReplayWindow: s.replayWindow,
		Retransmit: k.RetransmitTimeout, RetransmitBase: k.RetransmitBase, RetransmitTries: k.RetransmitTries,
		Child: childPolicy(c, k), NoFragmentation: !k.Fragmentation, FragmentSize: k.FragmentSize,
		UDPEncap: encapMode(c.UDPEncap), NATKeepalive: c.NATKeepalive,
		AnyRemote: c.AnyRemote, ChildFor: childPolicyFor(c, k),
	}
}

// childPolicyFor, for a dynamic peer, is childPolicy once the peer's
// address is known (nil: nothing in the policy names it).
func childPolicyFor(c *config.Config, k *config.IKE) func(netip.Addr) ike.ChildPolicy {
	if !c.AnyRemote {
		return nil
	}
	return func(remote netip.Addr) ike.ChildPolicy {
		bound := *c
		bound.Remote = remote
		return childPolicy(&bound, k)
	}
}

// childPolicy is what the CHILD_SAs must carry for the tunnel's shape:
// the ESP mode, and selectors by protocol between the underlay addresses
// (GRE, 47; IP-in-IP, 4 and 41) or, for a VTI, the configured prefixes
// of inner addresses, which the peer may narrow.
func childPolicy(c *config.Config, k *config.IKE) ike.ChildPolicy {
	host := func(a netip.Addr, protos ...uint8) []ike.TrafficSelector {
		var out []ike.TrafficSelector
		for _, p := range protos {
			out = append(out, ike.HostSelector(a, p))
		}
		return out
	}
	switch c.Shape() {
	case config.ShapeGRETunnel:
		return ike.ChildPolicy{TunnelMode: true, LocalTS: host(c.Local, protoGRE), RemoteTS: host(c.Remote, protoGRE)}
	case config.ShapeIPIP:
		return ike.ChildPolicy{LocalTS: host(c.Local, protoIPv4, protoIPv6), RemoteTS: host(c.Remote, protoIPv4, protoIPv6)}
	case config.ShapeVTI:
		p := ike.ChildPolicy{TunnelMode: true, Narrow: true}
		for _, x := range k.LocalTS {
			p.LocalTS = append(p.LocalTS, ike.RangeSelector(x))
		}
		for _, x := range k.RemoteTS {
			p.RemoteTS = append(p.RemoteTS, ike.RangeSelector(x))
		}
		return p
	}
	return ike.ChildPolicy{} // GRE host to host in transport mode
}

// runIKE negotiates and renews the SAs until ctx ends. A reload with new
// IKE settings (restartIKE) stops the engine, which deletes its SAs, and
// starts one with the new settings.
func (t *Tunnel) runIKE(ctx context.Context) error {
	var sender ike.Sender = t.ikeSock
	if t.shared != nil {
		sender = t.shared.ikeC // the port's reader calls offerIKE
	} else {
		go t.ikeSock.read(t.ike.Load)
	}
	for {
		t.ikeMu.Lock()
		cfg := ikeConfig(t.cfg, t.ikeCfg)
		if t.shared != nil {
			cfg.ESPSPI = t.shared.socks.SPIs.Allocate
			if t.cfg.AnyRemote {
				cfg.Handoff = t.handoff
			}
		}
		if r := t.remoteAddr(); r.IsValid() {
			// A dynamic peer found before a restart: the new engine
			// starts where the old one left it.
			cfg.Remote = r
			if cfg.ChildFor != nil {
				cfg.Child = cfg.ChildFor(r)
			}
		}
		ectx, cancel := context.WithCancel(ctx)
		e := ike.New(cfg, t, t.log)
		if t.natt != nil {
			e.UseNATSocket(t.natt)
		}
		t.ike.Store(e)
		t.ikeRestart = cancel
		t.ikeMu.Unlock()

		err := e.Serve(ectx, sender, nil)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if ectx.Err() == nil { // the engine failed on its own
			return err
		}
	}
}

// restartIKE makes runIKE start a new engine with the current config.
func (t *Tunnel) restartIKE() {
	t.ikeMu.Lock()
	defer t.ikeMu.Unlock()
	if t.ikeRestart != nil {
		t.ikeRestart()
	}
}
