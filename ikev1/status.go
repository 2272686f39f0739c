package ikev1

import (
	"fmt"
	"time"

	"github.com/gresec/gresec/ike"
)

// Status is a snapshot for `status`, in the terms of IOS's
// `show crypto isakmp sa` and `show crypto ipsec sa`.
type Status struct {
	Phase1 []Phase1Status `json:"isakmp_sas"`
	Phase2 []Phase2Status `json:"ipsec_sas"`
	// Received counts datagrams offered; Drops those dropped, by reason.
	Received uint64            `json:"received"`
	Drops    map[string]uint64 `json:"drops"`
	// Exchanges counts Main and Quick Modes by role and result;
	// Retransmits the requests sent again; DPDFailures the times the peer
	// was declared dead (RFC 3706).
	Exchanges   []ExchangeCount `json:"exchanges"`
	Retransmits uint64          `json:"retransmits"`
	DPDFailures uint64          `json:"dpd_failures"`
	// NAT is NAT traversal with the peer (RFC 3947).
	NAT *NATStatus `json:"nat,omitempty"`
}

// Phase1Status is one ISAKMP SA.
type Phase1Status struct {
	Dst            string `json:"dst"`
	Src            string `json:"src"`
	State          string `json:"state"` // MM_NO_STATE, MM_SA_SETUP, MM_KEY_EXCH, QM_IDLE
	Initiator      bool   `json:"initiator"`
	Cookies        string `json:"cookies"`
	Suite          string `json:"suite,omitempty"`
	PeerID         string `json:"peer_id,omitempty"`
	ExpiresSeconds int64  `json:"expires_seconds,omitempty"` // 0 until established
}

// Phase2Status is one installed ESP SA pair.
type Phase2Status struct {
	SPIIn          string `json:"spi_in"`
	SPIOut         string `json:"spi_out"`
	Transform      string `json:"transform"`
	Mode           string `json:"mode"` // Transport, Tunnel (IOS's "in use settings")
	PFS            string `json:"pfs,omitempty"`
	ExpiresSeconds int64  `json:"expires_seconds"`
	LifetimeKB     uint64 `json:"lifetime_kb,omitempty"`
}

// Status returns the last published snapshot.
func (e *Engine) Status() Status {
	e.mu.Lock()
	s := e.status
	e.mu.Unlock()
	s.Received = e.received.Load()
	s.Exchanges = e.counts.snapshot()
	s.Retransmits, s.DPDFailures = e.counts.retransmits.Load(), e.counts.dpdFailures.Load()
	s.Drops = map[string]uint64{}
	for _, r := range ike.DropReasons() {
		if int(r) < len(e.drops) {
			if n := e.drops[r].Load(); n > 0 {
				s.Drops[r.String()] = n
			}
		}
	}
	return s
}

func (e *Engine) publish(now time.Time) {
	var s Status
	for _, p := range e.p1s {
		ps := Phase1Status{Dst: e.cfg.Remote.String(), Src: e.cfg.Local.String(), State: p.state.String(),
			Initiator: p.initiator, Cookies: p.spis()}
		if p.state >= stateSASetup || !p.initiator {
			ps.Suite = p.suite.String()
		}
		if p.state == stateEstablished {
			ps.PeerID, ps.ExpiresSeconds = p.peerID.String(), int64(p.expires.Sub(now)/time.Second)
		}
		s.Phase1 = append(s.Phase1, ps)
	}
	mode := "Transport"
	if e.cfg.Child.TunnelMode {
		mode = "Tunnel"
	}
	for _, c := range e.children {
		p2 := Phase2Status{SPIIn: fmt.Sprintf("0x%08x", c.spiIn), SPIOut: fmt.Sprintf("0x%08x", c.spiOut),
			Transform: c.keys.Transform, Mode: mode + udpMode(c.keys.UDPPeer.IsValid()), ExpiresSeconds: int64(c.expires.Sub(now) / time.Second),
			LifetimeKB: c.keys.LifetimeBytes / 1024}
		if c.pfs != ike.DHNone {
			p2.PFS = c.pfs.String()
		}
		s.Phase2 = append(s.Phase2, p2)
	}
	// The keys of what is live, for ExportKeys, replacing the last copy.
	var keys ExportedKeys
	for _, p := range e.p1s {
		if p.keys.Enc != nil {
			keys.ISAKMP = append(keys.ISAKMP, ISAKMPKey{ICookie: p.ic, Enc: p.keys.Enc})
		}
	}
	for _, c := range e.children {
		keys.Children = append(keys.Children, c.keys)
	}
	s.NAT = e.natStatus()
	e.mu.Lock()
	e.status = s
	e.keys = keys
	e.mu.Unlock()
}

// ExportedKeys is a copy of the live keys, for Wireshark: each ISAKMP
// SA's initiator cookie and cipher key (its ikev1_decryption_table), and
// the ESP SAs.
type ExportedKeys struct {
	ISAKMP   []ISAKMPKey
	Children []ike.ChildKeys
}

// ISAKMPKey is one phase 1 SA's decryption key.
type ISAKMPKey struct {
	ICookie uint64
	Enc     ike.Secret
}

// ExportKeys copies the keys; the caller wipes them after use.
func (e *Engine) ExportKeys() ExportedKeys {
	e.mu.Lock()
	defer e.mu.Unlock()
	var x ExportedKeys
	for _, k := range e.keys.ISAKMP {
		x.ISAKMP = append(x.ISAKMP, ISAKMPKey{ICookie: k.ICookie, Enc: append(ike.Secret{}, k.Enc...)})
	}
	for _, c := range e.keys.Children {
		c.KeyIn, c.KeyOut = append(ike.Secret{}, c.KeyIn...), append(ike.Secret{}, c.KeyOut...)
		x.Children = append(x.Children, c)
	}
	return x
}

// udpMode is what IOS adds to "in use settings" for an SA that carries
// ESP in UDP.
func udpMode(udp bool) string {
	if udp {
		return " UDP-Encaps"
	}
	return ""
}
