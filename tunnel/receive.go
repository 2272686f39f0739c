package tunnel

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/gre"
	"github.com/gresec/gresec/rawip"
	"github.com/gresec/gresec/tun"
)

// receiveLoop moves packets raw socket -> ESP -> GRE -> TUN, a batch at a
// time, decrypting in place and handing the TUN writer slices of the
// receive buffers. On the daemon's shared sockets, their readers call
// Receive instead, and this waits for the end.
func (t *Tunnel) receiveLoop(ctx context.Context) error {
	if t.shared != nil {
		<-ctx.Done()
		return nil
	}
	return t.receiveFrom(t.conn)
}

// receiveFrom is receiveLoop on one socket: the raw one, or UDP 4500 for
// ESP in UDP under IKE (nat.go), whose pump runs beside the raw one.
func (t *Tunnel) receiveFrom(conn underlay) error {
	batch := batchSize
	msgs := make([]rawip.Message, batch)
	bases := make([][]byte, batch)
	for i := range msgs {
		// Receive behind tunWriteOffset bytes of headroom: an IPv6 raw
		// socket delivers no IP header we could later write over.
		bases[i] = make([]byte, tunWriteOffset+recvBufSize)
		msgs[i].Buf = bases[i][tunWriteOffset:]
	}
	for {
		n, err := conn.ReadBatch(msgs)
		if err != nil && n == 0 {
			if isClosed(err) {
				return nil
			}
			t.stats.readErrors.Add(1)
			// Transient (ENOBUFS, a device hiccup): do not spin on it.
			time.Sleep(10 * time.Millisecond)
			t.log.Sugar().Warnw("raw socket read failed", "err", err)
			continue
		}
		if t.receive(msgs[:n], bases) {
			return nil
		}
	}
}

// Receive takes a run of packets for this tunnel from the daemon's shared
// socket (demux.Sink), on its reading goroutine.
func (t *Tunnel) Receive(msgs []rawip.Message, bases [][]byte) { t.receive(msgs, bases) }

// receive opens msgs, read into bases, and writes the inner packets to
// the TUN device. It reports whether the device is closed. With UDP 4500
// open, two readers (raw ESP, ESP in UDP) call it: they take turns, as
// they share t.reflect, t.recvOut and the TUN writer; and a dynamic
// peer's new address (BindPeer) waits for the batch in hand.
func (t *Tunnel) receive(msgs []rawip.Message, bases [][]byte) (closed bool) {
	t.rxMu.Lock()
	defer t.rxMu.Unlock()
	out := t.decapsulateBatch(t.recvOut[:0], msgs, bases)
	t.recvOut = out[:0]
	if len(t.reflect) > 0 {
		t.sendReflections()
	}
	if len(out) == 0 {
		return false
	}
	if _, err := t.dev.Write(out, tunWriteOffset); err != nil {
		if isClosed(err) {
			return true
		}
		// The TUN writer reports the sum of its failures, not which
		// packets failed: count the batch once.
		t.stats.drop(dropTUNWriteError)
	}
	return false
}

// decapsulateBatch opens msgs (received into bases) and appends the inner
// packets to out, as decapsulate returns them; dropped packets are counted.
// Keepalives to send back are left in t.reflect. The traffic counters move
// once per batch.
func (t *Tunnel) decapsulateBatch(out [][]byte, msgs []rawip.Message, bases [][]byte) [][]byte {
	t.reflect = t.reflect[:0]
	n0, bytes := len(out), 0
	for i := range msgs {
		if inner := t.decapsulate(&msgs[i], bases[i]); inner != nil {
			out = append(out, inner)
			bytes += len(inner) - tunWriteOffset
		}
	}
	t.stats.rxPackets.Add(uint64(len(out) - n0))
	t.stats.rxBytes.Add(uint64(bytes))
	return out
}

// decapsulate opens one underlay packet and returns the inner packet with
// tunWriteOffset bytes of headroom in front (the TUN writer's own header),
// or nil when the packet was dropped (and counted) or was a keepalive: one
// of ours coming back is counted, one of the peer's is queued in t.reflect
// (keepalive.go). The caller counts the packets delivered.
func (t *Tunnel) decapsulate(m *rawip.Message, base []byte) []byte {
	if m.Addr != t.remote && !t.cfg.AnyRemote {
		// (A dynamic peer's packets pass on to their SA's ICV, which
		// alone tells them: its NAT may have moved it.)
		t.stats.drop(dropUnknownPeer)
		return nil
	}
	payload := m.Buf[m.Off : m.Off+m.N]
	if t.sadb != nil {
		spi, ok := esp.SPIOf(payload)
		if !ok {
			t.sadb.CountDrop(esp.DropMalformed)
			return nil
		}
		sa := t.sadb.Lookup(spi)
		if sa == nil {
			t.sadb.CountDrop(esp.DropBadSPI)
			if e := t.ike.Load(); e != nil {
				e.NoteUnknownSPI(spi) // the peer may have lost our SAs (RFC 7296 §1.5)
			}
			return nil
		}
		var next byte
		var reason esp.DropReason
		payload, next, reason = sa.Open(payload)
		if reason != esp.DropNone {
			return nil // counted by the SA
		}
		if m.Port != 0 {
			t.noteESPFrom(m) // ESP in UDP: the peer's NAT may have a new mapping
		}
		switch {
		case t.shape.bare:
			inner := t.ipPayload(next, payload)
			if sel := sa.Selectors(); inner != nil && sel != nil && !sel.Inbound(inner) {
				t.stats.drop(dropSelector) // RFC 4301 §5.2
				return nil
			}
			return t.deliver(inner, base)
		case t.shape.tunnelHeader:
			if next != t.shape.tunnelNext {
				t.stats.drop(dropNextHeader)
				return nil
			}
			if payload = t.tunnelPayload(payload); payload == nil {
				t.stats.drop(dropTunnelHeader)
				return nil
			}
		case next != esp.NextHeaderGRE:
			t.stats.drop(dropNextHeader)
			return nil
		}
	}
	proto, inner, info, err := gre.Decap(payload)
	if err != nil {
		t.stats.drop(dropGREMalformed)
		return nil
	}
	if t.greOpt.UseKey != info.HasKey || (info.HasKey && info.Key != t.greOpt.Key) {
		t.stats.drop(dropGREKey)
		return nil
	}
	if proto != gre.ProtoIPv4 && proto != gre.ProtoIPv6 {
		if proto == greProtoKeepalive {
			t.ka.cameBack()
			return nil
		}
		t.stats.drop(dropGREProtocol)
		return nil
	}
	if inner = innerPacket(proto, inner); inner == nil {
		t.stats.drop(dropInnerMalformed)
		return nil
	}
	if ka, malformed := t.keepaliveToReflect(proto, inner); ka != nil {
		t.reflect = append(t.reflect, rawip.Message{Buf: base, Off: offsetIn(base, ka), N: len(ka), Addr: t.remote})
		return nil
	} else if malformed {
		t.stats.drop(dropInnerMalformed)
		return nil
	}
	return t.deliver(inner, base)
}

// deliver clamps the MSS of inner, a checked inner packet in base (nil:
// dropped), and returns it with the TUN writer's headroom.
func (t *Tunnel) deliver(inner, base []byte) []byte {
	if inner == nil {
		return nil
	}
	if t.mss4 != 0 {
		m4, m6 := t.clampMSS()
		tun.ClampMSS(inner, m4, m6)
	}

	// inner is a sub-slice of base: find where it starts so the TUN writer
	// gets headroom in front of it and the buffer's spare capacity behind it
	// (where it coalesces segments).
	start := cap(base) - cap(inner)
	return base[start-tunWriteOffset : start+len(inner)]
}

// innerPacket checks the IP header of an inner packet of the GRE protocol
// type proto against the bytes that came, as the kernel's ip_rcv and
// ipv6_rcv do, and returns the packet cut to the length its header
// states, or nil when the header is not one a kernel would accept: the
// wrong version, an IPv4 header length under 20 bytes or beyond the
// packet, a total or payload length beyond the bytes present, or under
// the header. An IPv6 payload length of 0 is dropped too: it announces a
// jumbogram (RFC 2675), which no tunnel MTU lets through, or carries
// nothing.
//
// Bytes after the stated length are cut, not a reason to drop: the kernel
// trims them too (pskb_trim_rcsum), wireguard-go does the same with its
// padding, and a peer may pad (ESP's TFC padding, RFC 4303 §2.7, lands
// here). Cutting them also keeps the TUN writer's segment coalescing,
// which sizes segments from the slice, consistent with the headers.
func innerPacket(proto uint16, p []byte) []byte {
	switch proto {
	case gre.ProtoIPv4:
		if len(p) < 20 || p[0]>>4 != 4 {
			return nil
		}
		ihl := int(p[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(p[2:4]))
		if ihl < 20 || ihl > len(p) || total < ihl || total > len(p) {
			return nil
		}
		return p[:total]
	case gre.ProtoIPv6:
		if len(p) < 40 || p[0]>>4 != 6 {
			return nil
		}
		payload := int(binary.BigEndian.Uint16(p[4:6]))
		if payload == 0 || 40+payload > len(p) {
			return nil
		}
		return p[:40+payload]
	}
	return nil
}
