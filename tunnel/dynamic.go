package tunnel

import (
	"net/netip"

	"github.com/gresec/gresec/ike"
)

// A tunnel with remote = "any" learns its peer's address from IKE: the
// engine calls BindPeer once the peer authenticated from it (or its NAT
// moved it). In a daemon of many tunnels, the dynamic tunnels on one local
// address share the IKE_SA_INITs from unknown addresses and hand each
// half-open IKE SA to the tunnel whose remote_id its IKE_AUTH names
// (handoff; ike/dynamic.go).

var _ ike.PeerBinder = (*Tunnel)(nil)

// BindPeer makes addr the peer's underlay address: the pumps send there
// from their next batch, and the shared sockets hand the tunnel the IKE
// and unknown-SPI packets from there.
func (t *Tunnel) BindPeer(addr netip.Addr) {
	t.peerMu.Lock()
	defer t.peerMu.Unlock()
	old := t.remote
	if addr == old {
		return
	}
	// The pumps read t.remote under these, once per batch.
	t.rxMu.Lock()
	t.sendMu.Lock()
	t.remote = addr
	t.setUnderlay()
	t.sendMu.Unlock()
	t.rxMu.Unlock()
	if s := t.shared; s != nil {
		if old.IsValid() {
			s.esp.RemovePeer(old, t)
			if s.natt != nil {
				s.natt.RemovePeer(old, t)
			}
		}
		// Not ours when a tunnel configured with addr has it: then only
		// our SPIs reach us, which is all IKE and ESP need.
		s.esp.AddPeer(addr, t)
		if s.natt != nil {
			s.natt.AddPeer(addr, t)
		}
		s.ikeC.Bind(addr)
	}
	t.log.Sugar().Infow("dynamic peer bound", "remote", addr, "was", remoteText(old))
}

// remoteAddr is the peer's address now (invalid: a dynamic peer not
// heard from yet).
func (t *Tunnel) remoteAddr() netip.Addr {
	t.peerMu.Lock()
	defer t.peerMu.Unlock()
	return t.remote
}

func remoteText(a netip.Addr) string {
	if !a.IsValid() {
		return "any"
	}
	return a.String()
}

// handoff finds the engine of the dynamic tunnel on the same IKE port
// that takes identity id (ike.Config.Handoff).
func (t *Tunnel) handoff(id ike.ID) (*ike.Engine, func(spi uint64)) {
	o, _ := t.shared.ike.AnyOwner(id.Key()).(*Tunnel)
	if o == nil || o.shared == nil || o.shared.ikeC == nil {
		return nil, nil
	}
	e := o.ike.Load()
	if e == nil {
		return nil, nil
	}
	return e, o.shared.ikeC.Claim
}
