package tunnel

import (
	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/udpencap"
)

// UDPEncapStatus describes ESP in UDP (RFC 3948) when the tunnel uses it.
type UDPEncapStatus struct {
	LocalPort  int  `json:"local_port"`
	RemotePort int  `json:"remote_port"`
	GSO        bool `json:"gso"` // UDP segmentation offload on send
	GRO        bool `json:"gro"` // UDP receive coalescing
	// GSOSends: sendmsg calls that carried several packets; GROReceives:
	// received buffers that held several.
	GSOSends    uint64 `json:"gso_sends"`
	GROReceives uint64 `json:"gro_receives"`
	// Keepalives: NAT keepalives received. IKE: messages behind the
	// non-ESP marker handed to IKE; IKEDropped: those with no IKE to take
	// them. Dropped: datagrams too short for ESP or truncated.
	Keepalives uint64 `json:"nat_keepalives"`
	IKE        uint64 `json:"ike"`
	IKEDropped uint64 `json:"ike_dropped"`
	Dropped    uint64 `json:"dropped"`
}

// udpEncapStatus is nil unless the tunnel has a socket for ESP in UDP:
// static keys with udp_encap = "always", or IKE's NAT traversal socket
// (whose remote port is the one ESP goes to now, 0 while it is raw).
func (t *Tunnel) udpEncapStatus() *UDPEncapStatus {
	var c interface {
		Stats() udpencap.Stats
		Offloads() (gso, gro bool)
	}
	own, ok := t.conn.(*udpencap.Conn)
	if ok {
		c = own
	}
	local, remote := t.cfg.UDPPort, t.cfg.UDPPort
	if t.natt != nil {
		c, ok, local, remote = t.natt, true, ike.NATTPort, 0
		if p := t.path.Load(); p != nil && p.conn == underlay(t.natt) {
			remote = int(p.port)
		}
	}
	if !ok {
		return nil
	}
	st := c.Stats()
	gso, gro := c.Offloads()
	return &UDPEncapStatus{LocalPort: local, RemotePort: remote, GSO: gso, GRO: gro,
		GSOSends: st.GSOBatches, GROReceives: st.GROBatches, Keepalives: st.Keepalives,
		IKE: st.IKE, IKEDropped: st.IKEDropped, Dropped: st.Dropped}
}
