package demux

import "github.com/gresec/gresec/ike"

// IKEv1 (ISAKMP, version byte 0x10) shares the IKE ports with IKEv2 but
// not the SPI table: ourSPI and sentSPI read IKEv2 headers only, so an
// IKEv1 datagram always goes to the tunnel whose remote sent it. Its
// header has the same two 8-byte fields (the cookies), but its flags byte
// means something else (0x01 encryption, 0x02 commit, 0x04
// authentication only: no initiator flag), so a message does not say
// which cookie is ours. Learning IKEv1 cookies would need the engine to
// tell us, and learning both cookies of what it sends would learn the one
// the peer chose: a peer could pick another tunnel's IKEv2 SPI as its
// cookie and take that tunnel's IKE traffic (see sentSPI). By address is
// enough while every tunnel has its own remote (config.CheckSet refuses
// two with one local and remote address), and the IKEv1 engine takes
// datagrams from its remote only anyway.

// isIKEv2 tells whether b is long enough for an IKE header whose major
// version is 2 (RFC 7296 §3.1).
func isIKEv2(b []byte) bool {
	return len(b) >= ike.HeaderLen && ike.Header(b).Version()>>4 == 2
}
