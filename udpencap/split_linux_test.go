package udpencap

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gresec/gresec/rawip"
)

// FuzzSplit feeds split a coalesced receive of any bytes with any segment
// size, into messages of any buffer size: it never panics, hands out only
// whole datagrams of at least 8 bytes, in order, and accounts for every
// datagram (handed out, a keepalive, IKE or dropped).
func FuzzSplit(f *testing.F) {
	f.Add(make([]byte, 3000), int32(1400), 1500)
	f.Add([]byte{0xff}, int32(0), 64)
	f.Add(append([]byte{0, 0, 0, 0, 1}, make([]byte, 100)...), int32(50), 20)
	f.Add(make([]byte, 100), int32(-5), 8)
	f.Fuzz(func(t *testing.T, data []byte, seg int32, bufSize int) {
		if len(data) > groBufSize || bufSize < 0 || bufSize > 4096 {
			return
		}
		c := &Conn{gro: true, rhdrs: make([]mmsghdr, 1), rnames: make([]unix.RawSockaddrInet6, 1), rctl: make([]byte, groSpace)}
		c.grobuf = [][]byte{make([]byte, groBufSize)}
		copy(c.grobuf[0], data)
		c.rhdrs[0].n = uint32(len(data))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c.rctl[0]))
		h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_GRO
		h.SetLen(unix.CmsgLen(4))
		binary.NativeEndian.PutUint32(c.rctl[unix.CmsgLen(0):], uint32(seg))
		c.rhdrs[0].hdr.SetControllen(groSpace)
		ikeSeen := 0
		c.SetIKEHandler(func(msg []byte, from netip.AddrPort) { ikeSeen++ })
		c.pendN = 1

		want := len(data)
		if s := int(seg); s > 0 && s < len(data) {
			want = s
		}
		msgs := make([]rawip.Message, 3)
		for i := range msgs {
			msgs[i].Buf = make([]byte, bufSize)
		}
		off, handed := 0, 0
		for c.pend < c.pendN {
			n := c.split(msgs, 0)
			for _, m := range msgs[:n] {
				if m.N < minESP || m.N > want || m.Off != 0 {
					t.Fatalf("handed out %d bytes at %d (segment %d)", m.N, m.Off, want)
				}
				// In order: the datagram is the next one at or after off.
				for off < len(data) && string(data[off:min(off+want, len(data))]) != string(m.Buf[:m.N]) {
					off += want
				}
				if off >= len(data) {
					t.Fatalf("handed out a datagram not in the input, or out of order")
				}
				off += want
				handed++
			}
		}
		st := c.Stats()
		total := 0
		if len(data) > 0 {
			total = (len(data) + want - 1) / want
		}
		if got := handed + int(st.Keepalives+st.IKE+st.Dropped); got != total || int(st.IKE) != ikeSeen {
			t.Fatalf("%d datagrams in, %d accounted (%d handed out, %+v)", total, got, handed, st)
		}
	})
}
