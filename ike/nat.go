package ike

import (
	"crypto/sha1"
	"encoding/binary"
	"net/netip"
)

// NATHash is the data of NAT_DETECTION_SOURCE_IP/DESTINATION_IP
// (§2.23): SHA-1(SPIi | SPIr | IP address | port). SHA-1 is what the RFC
// fixes here; it is a hash of public values, not a security mechanism.
func NATHash(spii, spir uint64, ap netip.AddrPort) []byte {
	h := sha1.New()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], spii)
	binary.BigEndian.PutUint64(b[8:], spir)
	h.Write(b[:])
	h.Write(ap.Addr().Unmap().AsSlice())
	binary.BigEndian.PutUint16(b[:], ap.Port())
	h.Write(b[:2])
	return h.Sum(nil)
}
