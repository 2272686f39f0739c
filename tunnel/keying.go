package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/ike"
)

// The tunnel is the IKE engine's data plane: it turns negotiated CHILD_SA
// keys into ESP SAs.
var _ ike.DataPlane = (*Tunnel)(nil)

// children maps each CHILD_SA's inbound SPI to its outbound SA, so a
// delete can retire both halves.
type children struct {
	mu  sync.Mutex
	out map[uint32]*esp.SA
}

// InstallChild makes the new SAs live: inbound first, so the peer's first
// packets on the new SA are accepted, then the outbound switch. The old
// inbound SA stays until the engine removes it (make-before-break).
func (t *Tunnel) InstallChild(k ike.ChildKeys) error {
	in, err := esp.NewSA(k.SPIIn, k.KeyIn, t.cfg.ReplayWindow)
	if err != nil {
		return fmt.Errorf("inbound SA 0x%08x: %w", k.SPIIn, err)
	}
	out, err := esp.NewSA(k.SPIOut, k.KeyOut, 0)
	if err != nil {
		return fmt.Errorf("outbound SA 0x%08x: %w", k.SPIOut, err)
	}
	t.children.mu.Lock()
	defer t.children.mu.Unlock()
	if t.children.out == nil {
		t.children.out = map[uint32]*esp.SA{}
	}
	t.children.out[k.SPIIn] = out
	t.sadb.AddInbound(in)
	t.sadb.SetOutbound(out)
	return nil
}

// RemoveChild retires a CHILD_SA. If it was still the one sending (a
// delete, not a rekey), sending stops until a new one is installed.
func (t *Tunnel) RemoveChild(spiIn uint32) error {
	t.children.mu.Lock()
	defer t.children.mu.Unlock()
	t.sadb.RemoveInbound(spiIn)
	if out := t.children.out[spiIn]; out != nil && t.sadb.Outbound() == out {
		t.sadb.SetOutbound(nil)
	}
	delete(t.children.out, spiIn)
	return nil
}

// ChildBytes reports the payload bytes each half has carried.
func (t *Tunnel) ChildBytes(spiIn uint32) (in, out uint64) {
	if sa := t.sadb.Lookup(spiIn); sa != nil {
		in = sa.Stats().Bytes
	}
	t.children.mu.Lock()
	o := t.children.out[spiIn]
	t.children.mu.Unlock()
	if o != nil {
		out = o.Stats().Bytes
	}
	return in, out
}

// runIKE negotiates and renews the SAs until ctx ends.
func (t *Tunnel) runIKE(ctx context.Context) error {
	c := t.cfg
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.Local, 500)))
	if err != nil {
		return fmt.Errorf("IKE socket %s port 500: %w", c.Local, err)
	}
	t.ike = ike.New(ike.Config{
		Local: c.Local, Remote: c.Remote, Initiate: c.IKE.Initiate,
		LocalPSK: c.IKE.LocalPSK, RemotePSK: c.IKE.RemotePSK,
		LocalID: c.IKE.LocalID, RemoteID: c.IKE.RemoteID,
		Proposals: c.IKE.Proposals, ESPProposals: c.IKE.ESPProposals,
		Lifetime: c.IKE.Lifetime, ChildLifetime: c.IKE.ChildLifetime, ChildLifetimeBytes: c.IKE.ChildLifetimeBytes,
		DPD: c.IKE.DPD, ReplayWindow: c.ReplayWindow,
	}, t, t.log)
	t.ikeReady.Store(true)
	return t.ike.Run(ctx, conn)
}
