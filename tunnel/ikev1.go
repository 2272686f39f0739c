package tunnel

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"

	"github.com/gresec/gresec/ikev1"
)

// runIKEv1 is runIKE for keying = "ikev1": the same socket, config and
// data plane, with the IKEv1 engine. IKEv1 datagrams reach it through the
// socket's v1 hook (the header's version byte tells them apart), or, in a
// daemon that shares its sockets, through the IKE port, which routes them
// by the peer's address (offerIKEv1, offerNATTv1); it then sends through
// the port's IKE client and t.natt is the shared UDP 4500 socket.
func (t *Tunnel) runIKEv1(ctx context.Context) error {
	var sender ikev1.Sender = t.ikeSock
	if t.shared != nil {
		sender = t.shared.ikeC
	} else {
		go t.ikeSock.read(t.ike.Load)
	}
	for {
		t.ikeMu.Lock()
		cfg := ikeConfig(t.cfg, t.ikeCfg)
		if t.shared != nil {
			cfg.ESPSPI = t.shared.socks.SPIs.Allocate
		}
		e, err := ikev1.New(cfg, t, t.log)
		if err != nil {
			t.ikeMu.Unlock()
			return err
		}
		if t.natt != nil {
			e.UseNATSocket(t.natt)
		}
		ectx, cancel := context.WithCancel(ctx)
		if t.ikeSock != nil {
			t.ikeSock.v1.Store(e)
		}
		t.ikev1.Store(e)
		t.ikeRestart = cancel
		t.ikeMu.Unlock()

		err = e.Serve(ectx, sender)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if ectx.Err() == nil {
			return err
		}
	}
}

// offerV1 hands an IKEv1 datagram to the IKEv1 engine; false when it is
// not IKEv1 or no such engine runs.
func (s *ikeSocket) offerV1(b []byte, from netip.AddrPort) bool {
	e := s.v1.Load()
	if e == nil || !ikev1.IsV1(b) {
		return false
	}
	e.Offer(b, from)
	return true
}

// IKEv1Status is the IKEv1 engine's status, nil unless keying = "ikev1".
func (t *Tunnel) IKEv1Status() *ikev1.Status {
	e := t.ikev1.Load()
	if e == nil {
		return nil
	}
	s := e.Status()
	return &s
}

// ISAKMPKey is one IKEv1 phase 1 SA: Wireshark's ikev1_decryption_table
// row.
type ISAKMPKey struct {
	ICookie string // 16 hex digits
	Key     string // hex of the cipher key
}

// ikev1Keys adds the IKEv1 engine's live phase 1 and phase 2 SAs to k.
func (t *Tunnel) ikev1Keys(k *KeyExport) {
	e := t.ikev1.Load()
	if e == nil {
		return
	}
	x := e.ExportKeys()
	t.childKeys(k, x.Children)
	for _, p := range x.ISAKMP {
		k.ISAKMP = append(k.ISAKMP, ISAKMPKey{ICookie: fmt.Sprintf("%016x", p.ICookie), Key: hex.EncodeToString(p.Enc)})
		p.Enc.Wipe()
	}
}
