package ike

import (
	"time"

	"go.uber.org/zap"
)

// deleteIKE tells the peer we are deleting sa (one try; no answer needed).
func (e *Engine) deleteIKE(now time.Time, sa *ikeSA) {
	m := &Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: INFORMATIONAL, Flags: sa.flags(false), MessageID: sa.nextReqID}
	if e.req != nil && e.req.sa == sa {
		m.MessageID = e.req.id + 1
	}
	if raw, err := sa.protect(m, Payloads{&Delete{Protocol: ProtoIKE}}); err == nil {
		e.write(raw)
	}
}

// respondInformational handles Delete and liveness checks (§1.4, §2.4).
func (e *Engine) respondInformational(now time.Time, sa *ikeSA, ps Payloads) Payloads {
	var out Payloads
	var ours []uint32
	for _, p := range ps {
		d, ok := p.(*Delete)
		if !ok {
			continue
		}
		switch d.Protocol {
		case ProtoIKE:
			e.log.Info("peer deletes the IKE SA", e.saFields(sa, nil)...)
			sa.deleteAfterResponse = true
			return nil
		case ProtoESP:
			for _, spi := range d.SPIs {
				// The peer names its inbound SPIs: our outbound ones.
				c := sa.childByOut(spi)
				if c == nil {
					continue
				}
				ours = append(ours, c.keys.SPIIn)
				e.removeChild(sa, c)
			}
		}
	}
	if len(ours) > 0 {
		out = append(out, &Delete{Protocol: ProtoESP, SPIs: ours})
	}
	return out
}

func (e *Engine) removeChild(sa *ikeSA, c *childSA) {
	for i, x := range sa.children {
		if x == c {
			sa.children = append(sa.children[:i], sa.children[i+1:]...)
			break
		}
	}
	if err := e.dp.RemoveChild(c.keys.SPIIn); err != nil {
		e.log.Warn("remove child failed", zap.Uint32("spi_in", c.keys.SPIIn), zap.Error(err))
	}
	e.log.Info("CHILD_SA removed", append(e.saFields(sa, nil), zap.Uint32("spi_in", c.keys.SPIIn), zap.Uint32("spi_out", c.keys.SPIOut))...)
}

// rekeyAt is when we start rekeying something with lifetime d created at
// t. The original initiator rekeys at 85 %, the responder at 92 %: the
// asymmetry keeps the two sides from starting the same rekey together.
func (sa *ikeSA) rekeyAt(t time.Time, d time.Duration) time.Time {
	if sa.initiator {
		return t.Add(d * 85 / 100)
	}
	return t.Add(d * 92 / 100)
}

// timers runs an established SA's periodic work.
func (e *Engine) timers(now time.Time) {
	sa := e.sa
	// Liveness: inbound ESP counts as a sign of life.
	for _, c := range sa.children {
		in, _ := e.dp.ChildBytes(c.keys.SPIIn)
		if in != c.lastIn {
			c.lastIn = in
			sa.lastRecv = now
		}
	}
	if e.req != nil || len(e.queue) > 0 {
		return
	}
	if e.cfg.Lifetime > 0 && !sa.rekeying && !now.Before(sa.rekeyAt(sa.establishedAt, e.cfg.Lifetime)) && now.After(sa.retryRekey) {
		e.rekeyIKE(now, sa)
		return
	}
	for _, c := range sa.children {
		if c.rekeying || now.Before(c.retryRekey) {
			continue
		}
		due := e.cfg.ChildLifetime > 0 && !now.Before(sa.rekeyAt(c.installed, e.cfg.ChildLifetime))
		if lb := e.cfg.ChildLifetimeBytes; lb > 0 {
			in, out := e.dp.ChildBytes(c.keys.SPIIn)
			due = due || max(in, out) >= lb/10*9
		}
		if due {
			e.rekeyChild(now, sa, c, DHNone, 0)
			return
		}
	}
	if e.cfg.DPD > 0 && !now.Before(sa.lastRecv.Add(e.cfg.DPD)) {
		e.log.Debug("liveness check", e.saFields(sa, nil)...)
		sa.lastRecv = now // one check per interval
		e.sendRequest(now, sa, INFORMATIONAL, nil, func(time.Time, *Message, []byte, Payloads) {},
			func(now time.Time) { e.fail(now, "peer is dead (no answer to liveness check)") })
	}
}
