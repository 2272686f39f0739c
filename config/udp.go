package config

import "time"

// UDPEncap says whether ESP travels in UDP (RFC 3948) or as IP protocol 50.
type UDPEncap string

const (
	// UDPEncapAuto: raw ESP unless a NAT is found. Static keys cannot find
	// one, so they keep raw ESP; under IKE, NAT detection (RFC 7296
	// §2.23) finding a NAT on either side moves IKE to port 4500 and the
	// CHILD_SAs to ESP in UDP.
	UDPEncapAuto UDPEncap = "auto"
	// UDPEncapAlways: ESP in UDP even without NAT (strongSwan encap = yes).
	// With static keys both ends use UDPPort (ip xfrm ... encap espinudp
	// 4500 4500 0.0.0.0); under IKE our NAT detection hash is faked so
	// that both ends float to port 4500 and encapsulate.
	UDPEncapAlways UDPEncap = "always"
	// UDPEncapNever: raw ESP only. Under IKE an initiator that finds a NAT
	// refuses to go on; a responder warns and keeps raw ESP.
	UDPEncapNever UDPEncap = "never"

	// DefaultUDPPort is the IKE NAT-T and ESP-in-UDP port (RFC 3948 §2).
	DefaultUDPPort = 4500
	// udpHeaderLen is what ESP in UDP adds to every packet.
	udpHeaderLen = 8
	// DefaultNATKeepalive is RFC 3948 §2.3's interval.
	DefaultNATKeepalive = 20 * time.Second
)

// NATTSocket reports whether an IKE tunnel (either version) opens the UDP
// 4500 socket for NAT traversal at start.
func (c *Config) NATTSocket() bool {
	return c.Keying.IKE() && c.UDPEncap != UDPEncapNever
}

// ESPInUDP reports whether the data plane sends and receives ESP in UDP
// on UDPPort (both ends), rather than as raw IP protocol 50.
func (c *Config) ESPInUDP() bool {
	return c.Keying == KeyingStatic && c.UDPEncap == UDPEncapAlways
}

// udpOverhead is the UDP header when ESP travels in UDP for sure, else
// 0. Under IKE with "auto" only a NAT decides, later: the MTU is the raw
// one (docs/configuration.md).
func (c *Config) udpOverhead() int {
	if c.ESPInUDP() || c.Keying.IKE() && c.UDPEncap == UDPEncapAlways {
		return udpHeaderLen
	}
	return 0
}

// udpEncap reads [ipsec] udp_encap and udp_port.
func (v *validator) udpEncap(encap *string, port *int64, c *Config) {
	c.UDPEncap, c.UDPPort = UDPEncapAuto, DefaultUDPPort
	if encap != nil {
		switch e := UDPEncap(*encap); e {
		case UDPEncapAuto, UDPEncapAlways, UDPEncapNever:
			c.UDPEncap = e
		default:
			v.fail("ipsec.udp_encap", "expected \"auto\", \"always\" or \"never\", got %s", quote(*encap))
		}
	}
	if c.Keying == KeyingNone && c.UDPEncap == UDPEncapAlways {
		v.fail("ipsec.udp_encap", "\"always\" needs ESP, but ipsec.keying is \"none\" (plain GRE); expected \"auto\" or \"never\"")
	}
	if port != nil {
		if *port < 1 || *port > 65535 {
			v.fail("ipsec.udp_port", "expected an integer 1..65535, got %d", *port)
		}
		c.UDPPort = int(*port)
		if c.Keying.IKE() && c.UDPPort != DefaultUDPPort {
			v.fail("ipsec.udp_port", "IKE uses port %d for NAT traversal (RFC 7296 §2.23); expected udp_port only with keying = \"static\"", DefaultUDPPort)
		}
	}
}
