package tunnel

import (
	"time"

	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/gre"
	"github.com/gresec/gresec/rawip"
	"github.com/gresec/gresec/tun"
)

// sendLoop moves packets TUN -> GRE -> ESP -> raw socket, a batch at a time,
// writing headers in place in front of each packet: nothing is copied or
// allocated per packet.
func (t *Tunnel) sendLoop() error {
	batch := t.dev.BatchSize()
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, sendHeadroom+t.cfg.MTU+sendTailroom)
	}
	sizes := make([]int, batch)
	msgs := make([]rawip.Message, batch)

	for {
		n, err := t.dev.Read(bufs, sizes, sendHeadroom)
		if err != nil && n == 0 {
			if isClosed(err) {
				return nil
			}
			t.stats.readErrors.Add(1)
			// Transient (ENOBUFS, a device hiccup): do not spin on it.
			time.Sleep(10 * time.Millisecond)
			t.log.Sugar().Warnw("TUN read failed", "err", err)
			continue
		}
		// Under sendMu from sealing to sending: keepalives share the
		// socket and the SA, and must not overtake a batch by more
		// sequence numbers than the peer's replay window holds.
		t.sendMu.Lock()
		m := t.encapsulateBatch(msgs, bufs[:n], sizes)
		if m == 0 {
			t.sendMu.Unlock()
			continue
		}
		sent, err := t.writeBatch(msgs[:m])
		t.sendMu.Unlock()
		if sent < m {
			t.stats.drops[dropSendError].Add(uint64(m - sent))
		}
		if err != nil && isClosed(err) {
			return nil
		}
	}
}

// encapsulateBatch encapsulates the packets bufs[i][sendHeadroom:][:sizes[i]]
// into msgs, from the front, and returns how many it filled; dropped packets
// are counted. The traffic counters move once per batch.
func (t *Tunnel) encapsulateBatch(msgs []rawip.Message, bufs [][]byte, sizes []int) int {
	var sa *esp.SA
	if t.sadb != nil {
		if sa = t.sadb.Outbound(); sa == nil {
			t.stats.drops[dropNoSA].Add(uint64(len(bufs)))
			return 0
		}
	}
	m, bytes := 0, 0
	for i, buf := range bufs {
		if t.encapsulate(&msgs[m], buf, sizes[i], sa) {
			m++
			bytes += sizes[i]
		}
	}
	t.stats.txPackets.Add(uint64(m))
	t.stats.txBytes.Add(uint64(bytes))
	return m
}

// encapsulate turns the inner packet at buf[sendHeadroom:][:size] into the
// underlay payload described by m: GRE (unless the shape carries IP
// without it), tunnel mode's IP header for GRE in tunnel mode, then ESP
// when sa is not nil. It
// reports false when the packet was dropped (and counted). The caller
// counts the packets sent.
func (t *Tunnel) encapsulate(m *rawip.Message, buf []byte, size int, sa *esp.SA) bool {
	pkt := buf[sendHeadroom : sendHeadroom+size]
	v := ipVersion(pkt)
	if v == 0 {
		t.stats.drop(dropNotIP)
		return false
	}
	if size > t.cfg.MTU {
		t.stats.drop(dropTooBig)
		return false
	}
	if t.mss4 != 0 {
		m4, m6 := t.clampMSS()
		tun.ClampMSS(pkt, m4, m6)
	}

	start, end := sendHeadroom, sendHeadroom+size
	var out []byte
	var err error
	if !t.shape.bare {
		proto := uint16(gre.ProtoIPv4)
		if v == 6 {
			proto = gre.ProtoIPv6
		}
		t.greSeq++ // only sent when the GRE options ask for sequence numbers
		start = gre.Encap(buf, start, size, proto, t.greOpt, t.greSeq)
		if sa == nil {
			*m = rawip.Message{Buf: buf, Off: start, N: end - start, Addr: t.remote}
			return true
		}
		out, err = t.sealGRE(sa, buf, start, end)
	} else {
		// A VTI or IP-in-IP: the inner packet is ESP's payload (the
		// config has refused these shapes without ESP).
		out, err = sa.Seal(buf, start, size, nextHeaderOf(v))
	}
	if err != nil {
		t.stats.drop(dropSeal)
		return false
	}
	*m = rawip.Message{Buf: buf, Off: offsetIn(buf, out), N: len(out), Addr: t.remote}
	return true
}

func ipVersion(pkt []byte) int {
	if len(pkt) == 0 {
		return 0
	}
	v := int(pkt[0] >> 4)
	if (v == 4 && len(pkt) >= 20) || (v == 6 && len(pkt) >= 40) {
		return v
	}
	return 0
}
