package tunnel

import "sync/atomic"

// drop is a reason the tunnel itself (not an SA) discards a packet.
type drop int

const (
	dropNotIP          drop = iota // TUN gave us something that is not IPv4/IPv6
	dropTooBig                     // inner packet larger than the tunnel MTU
	dropNoSA                       // no outbound SA installed yet
	dropSeal                       // the outbound SA refused (sequence numbers exhausted)
	dropUnknownPeer                // underlay packet from an address that is not our peer
	dropNextHeader                 // ESP payload is not what the shape carries (GRE, or IP for a VTI and IP-in-IP)
	dropTunnelHeader               // tunnel mode's IP header in front of GRE is malformed, a fragment, not GRE, or not from the peer to us
	dropGREMalformed               // GRE header we cannot parse
	dropGREProtocol                // GRE carries something other than IPv4/IPv6
	dropGREKey                     // GRE key absent or not ours
	dropInnerMalformed             // inner IP header of the wrong version, or whose lengths do not fit the bytes that came
	dropSendError                  // the underlay refused the packet
	dropTUNWriteError              // the TUN device refused the packet
	dropNoPolicy                   // a VTI's inner packet no outbound SA's selectors cover
	dropSelector                   // an inner packet outside the selectors of the SA it came on (RFC 4301 §5.2)
	numDrops
)

var dropNames = [numDrops]string{
	dropNotIP:          "not_ip",
	dropTooBig:         "too_big",
	dropNoSA:           "no_outbound_sa",
	dropSeal:           "seal_failed",
	dropUnknownPeer:    "unknown_peer",
	dropNextHeader:     "esp_next_header_not_gre",
	dropTunnelHeader:   "tunnel_header",
	dropGREMalformed:   "gre_malformed",
	dropGREProtocol:    "gre_protocol",
	dropGREKey:         "gre_key_mismatch",
	dropInnerMalformed: "inner_malformed",
	dropSendError:      "send_error",
	dropTUNWriteError:  "tun_write_error",
	dropNoPolicy:       "no_sa_for_selectors",
	dropSelector:       "inbound_selector_mismatch",
}

// String is the drop's name in `gresec status` and gresec_drops_total.
func (d drop) String() string {
	if d >= 0 && d < numDrops {
		return dropNames[d]
	}
	return "unknown"
}

// stats are the tunnel's own counters. Each pump owns the counters it
// writes; atomics only make them safe to read from the status server.
type stats struct {
	txPackets, txBytes atomic.Uint64 // inner packets/bytes sent into the tunnel
	rxPackets, rxBytes atomic.Uint64 // inner packets/bytes delivered to the TUN
	drops              [numDrops]atomic.Uint64
	readErrors         atomic.Uint64 // failed TUN or socket reads (not packets)
}

func (s *stats) drop(d drop) { s.drops[d].Add(1) }
