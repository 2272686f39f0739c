// The INFORMATIONAL responder (RFC 7296 §1.4): Deletes of IKE and CHILD
// SAs, liveness checks (answered empty), MOBIKE address updates (nat.go).

package ike

import "time"

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
			// §2.25.2: a delete beats our own rekey of it, which is
			// forgotten with the SA. If the peer rekeyed it too, its
			// Delete says its rekey won (its answer to ours is late).
			e.log.Info("peer deletes the IKE SA", e.saFields(sa, nil)...)
			if p := sa.peerRekey; p != nil && !p.gone() {
				sa.peerRekey, sa.ikeRekeying = nil, false
				e.completeIKERekey(now, sa, p, false)
			}
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
				e.retireChild(sa, c)
			}
		}
	}
	if len(ours) > 0 {
		out = append(out, &Delete{Protocol: ProtoESP, SPIs: ours})
	}
	return append(out, e.mobikeAnswer(sa, ps)...)
}
