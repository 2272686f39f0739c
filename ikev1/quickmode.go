package ikev1

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/gresec/gresec/ike"
)

const protoGRE = 47

// quick is one Quick Mode exchange (RFC 2409 §5.5).
type quick struct {
	initiator bool
	msgID     uint32
	iv        []byte
	ni, nr    []byte
	dh        *ike.DHKey
	gxy       ike.Secret
	spiIn     uint32
	spiOut    uint32
	suite     Phase2Suite
	life      Phase2Life
	ids       []Payload // IDci, IDcr as sent
	replaces  *child    // the SA this one rekeys
	lastIn    []byte
	lastOut   []byte
	retry     retry
	done      bool
	doneAt    time.Time
}

func (q *quick) wipe() { q.gxy.Wipe() }

// child is an installed ESP SA pair.
type child struct {
	spiIn, spiOut uint32
	keys          ike.ChildKeys
	installed     time.Time
	expires       time.Time
	rekeyAt       time.Time
	rekeying      bool
	initiator     bool
	// replaces is the SA this one rekeyed, deleted once switchAt (when
	// sending moves to this one) has passed.
	replaces *child
	switchAt time.Time
	pfs      ike.DHGroup
}

// clientIDs are our Quick Mode IDs: GRE (protocol 47) host to host
// between the IKE endpoints, as the tunnel's transport mode needs.
func (e *Engine) clientIDs(initiator bool) (ci, cr ID) {
	l, r := HostID(e.cfg.Local, protoGRE), HostID(e.cfg.Remote, protoGRE)
	if initiator {
		return l, r
	}
	return r, l
}

func (e *Engine) newSPI() uint32 {
	if e.cfg.ESPSPI != nil { // a daemon's allocator: unique among its tunnels
		return e.cfg.ESPSPI()
	}
	for {
		s := binary.BigEndian.Uint32(e.random(4))
		if s > 255 {
			return s
		}
	}
}

func (e *Engine) newMsgID(p *phase1) uint32 {
	for {
		m := binary.BigEndian.Uint32(e.random(4))
		if _, used := p.quicks[m]; m != 0 && !used {
			return m
		}
	}
}

// hashPayloads is prf(SKEYID_a, prefix | rest) over encoded payloads.
func hashPayloads(p *phase1, prefix []byte, rest []Payload) []byte {
	return p.suite.PRF.Sum(p.keys.A, prefix, AppendPayloads(nil, rest))
}

// startQuick sends Quick Mode's first message, for a new SA or to
// rekey old.
func (e *Engine) startQuick(now time.Time, p *phase1, old *child) {
	if len(p.quicks) >= maxQuick {
		return
	}
	q := &quick{initiator: true, msgID: e.newMsgID(p), spiIn: e.newSPI(), ni: e.random(nonceLen), replaces: old}
	q.iv = Phase2IV(p.suite.PRF, p.iv, q.msgID)
	pfs := e.suites2[0].PFS
	prop := Proposal{Num: 1, Protocol: ProtoESP, SPI: be32(q.spiIn)}
	life := Phase2Life{Time: e.cfg.ChildLifetime, KB: e.cfg.ChildLifetimeBytes / 1024}
	for _, s := range e.suites2 {
		if s.PFS == pfs && len(prop.Transforms) < maxTransforms {
			prop.Transforms = append(prop.Transforms, s.transform(uint8(len(prop.Transforms)+1), e.encapMode(p), life))
		}
	}
	rest := []Payload{{PayloadSA, SA{Proposals: []Proposal{prop}}.Encode()}, {PayloadNonce, q.ni}}
	if pfs != ike.DHNone {
		var err error
		if q.dh, err = ike.GenerateDH(pfs, e.rand); err != nil {
			e.log.Warn("Quick Mode: DH", zap.Error(err))
			return
		}
		rest = append(rest, Payload{PayloadKE, q.dh.Public()})
	}
	ci, cr := e.clientIDs(true)
	q.ids = []Payload{{PayloadID, ci.Encode()}, {PayloadID, cr.Encode()}}
	rest = append(rest, q.ids...)
	rest = append(rest, e.natOA(p, true)...)
	h1 := hashPayloads(p, be32(q.msgID), rest)
	msg, err := e.encrypt(p.header(ExchangeQuick, q.msgID, 0), append([]Payload{{PayloadHash, h1}}, rest...), p.keys.Enc, &q.iv)
	if err != nil {
		e.log.Warn("Quick Mode: encrypt", zap.Error(err))
		return
	}
	p.quicks[q.msgID] = q
	e.log.Info("initiating Quick Mode", zap.Uint32("msgid", q.msgID), zap.String("spi_in", fmt.Sprintf("0x%08x", q.spiIn)),
		zap.String("proposals", suitesString(e.suites2)), zap.Bool("rekey", old != nil))
	e.arm(&q.retry, now, msg)
}

// quickPlain decrypts a Quick Mode message and checks that it starts with
// a HASH payload; it returns the payloads and the encoded bytes after the
// HASH (what the hashes cover).
func (e *Engine) quickPlain(p *phase1, q *quick, m *Message) (ps []Payload, hash, rest []byte, err error) {
	iv := q.iv
	ps, err = e.decrypt(p.keys.Enc, &iv, m)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(ps) == 0 || ps[0].Type != PayloadHash {
		e.drop(ike.DropMalformed)
		return nil, nil, nil, fmt.Errorf("message does not start with HASH")
	}
	q.iv = iv
	return ps[1:], ps[0].Body, AppendPayloads(nil, ps[1:]), nil
}

// quick handles Quick Mode messages by their message ID.
func (e *Engine) quick(now time.Time, p *phase1, m *Message, raw []byte) {
	if p.state != stateEstablished || m.Encrypted == nil || m.MsgID == 0 {
		e.drop(ike.DropUnexpected)
		return
	}
	q := p.quicks[m.MsgID]
	if q != nil && q.lastIn != nil && bytes.Equal(raw, q.lastIn) {
		if q.lastOut != nil {
			e.write(q.lastOut)
		}
		return
	}
	var err error
	fresh := q != nil
	switch {
	case q == nil:
		if len(p.quicks) >= maxQuick {
			e.drop(ike.DropRateLimited)
			return
		}
		q = &quick{msgID: m.MsgID, iv: Phase2IV(p.suite.PRF, p.iv, m.MsgID)}
		err = e.quickResponder1(now, p, q, m, raw)
	case q.initiator && !q.done:
		err = e.quickInitiator2(now, p, q, m, raw)
	case !q.initiator && !q.done:
		err = e.quickResponder3(now, p, q, m)
	default:
		e.drop(ike.DropRetransmitMismatch)
		return
	}
	// A first message may be a replay (it verifies again once its Quick
	// Mode has lingered out); the others answer our fresh nonce. Only
	// those show life, or a new NAT mapping of the peer.
	if err == nil && fresh {
		e.notePeer(p)
	}
	if err == nil && fresh && p == e.established() {
		e.alive(now)
	}
	if err != nil {
		e.log.Warn("Quick Mode failed", zap.Uint32("msgid", m.MsgID), zap.Bool("initiator", q.initiator), zap.Error(err))
		e.counts.exchange("quick_mode", q.initiator, ResultFailed)
		if q.initiator {
			delete(p.quicks, q.msgID)
			e.reconnect(now)
		}
	}
}

// checkIDs: Quick Mode client IDs, when present, must be GRE host to host
// between the IKE endpoints, as we send them. The ID of a side behind a
// NAT may name its private address, which the other side never sees
// (RFC 3947 §5.2): any GRE host ID of the right family stands for it.
func (e *Engine) checkIDs(p *phase1, ps []Payload, initiator bool) ([]Payload, error) {
	ids := All(ps, PayloadID)
	if len(ids) == 0 {
		return nil, nil
	}
	if len(ids) != 2 {
		return nil, fmt.Errorf("%d client IDs, want 2", len(ids))
	}
	wantCi, wantCr := e.clientIDs(initiator)
	for i, want := range []ID{wantCi, wantCr} {
		got, err := DecodeID(ids[i].Body)
		if err != nil {
			return nil, err
		}
		// ID i is ours when we are the side it names.
		natted := p.nat.there
		if (i == 0) == initiator {
			natted = p.nat.here
		}
		if natted && p.nat.natt && got.Type == want.Type && got.Protocol == protoGRE && got.Port == 0 && len(got.Data) == len(want.Data) {
			continue
		}
		if !bytes.Equal(got.Encode(), want.Encode()) {
			return nil, fmt.Errorf("client ID %v, want %v (GRE host to host)", got, want)
		}
	}
	return ids, nil
}

func (e *Engine) quickResponder1(now time.Time, p *phase1, q *quick, m *Message, raw []byte) error {
	ps, hash, rest, err := e.quickPlain(p, q, m)
	if err != nil {
		return err
	}
	if want := p.suite.PRF.Sum(p.keys.A, be32(q.msgID), rest); !ike.Secret(want).Equal(hash) {
		e.drop(ike.DropIntegrity)
		return fmt.Errorf("HASH(1) does not verify")
	}
	sap, nonce := Find(ps, PayloadSA), Find(ps, PayloadNonce)
	if sap == nil || nonce == nil || len(nonce.Body) < 8 || len(nonce.Body) > 256 {
		return fmt.Errorf("SA or nonce missing")
	}
	sa, err := DecodeSA(sap.Body)
	if err != nil {
		return err
	}
	if q.ids, err = e.checkIDs(p, ps, false); err != nil {
		return e.refuseQuick(p, err)
	}
	var echo Proposal
	found := false
	for _, o := range e.suites2 {
		for _, prop := range sa.Proposals {
			if prop.Protocol != ProtoESP || len(prop.SPI) != 4 || found {
				continue
			}
			for _, t := range prop.Transforms {
				s, encap, life, ok := phase2Of(t)
				if ok && encap == e.encapMode(p) && phase2Matches(s, o) {
					q.suite, q.life, found = s, life, true
					q.spiOut = binary.BigEndian.Uint32(prop.SPI)
					echo = prop
					echo.Transforms = []Transform{t}
					break
				}
			}
		}
	}
	if !found {
		var theirs []string
		for _, prop := range sa.Proposals {
			theirs = append(theirs, transformsString(prop, false))
		}
		e.log.Warn("Quick Mode: no proposal chosen", zap.Strings("peer_proposals", theirs), zap.String("ours", suitesString(e.suites2)),
			zap.Uint64("encap_mode", e.encapMode(p)))
		return e.refuseQuick(p, fmt.Errorf("no proposal chosen"))
	}
	q.ni, q.nr, q.spiIn = clone(nonce.Body), e.random(nonceLen), e.newSPI()
	echo.SPI = be32(q.spiIn)
	out := []Payload{{PayloadSA, SA{Proposals: []Proposal{echo}}.Encode()}, {PayloadNonce, q.nr}}
	if q.suite.PFS != ike.DHNone {
		ke := Find(ps, PayloadKE)
		if ke == nil {
			return e.refuseQuick(p, fmt.Errorf("PFS with %v but no KE", q.suite.PFS))
		}
		if err := ike.ValidatePublic(q.suite.PFS, ke.Body); err != nil {
			e.drop(ike.DropBadKE)
			return err
		}
		if q.dh, err = ike.GenerateDH(q.suite.PFS, e.rand); err != nil {
			return err
		}
		if q.gxy, err = q.dh.Shared(ke.Body); err != nil {
			return err
		}
		out = append(out, Payload{PayloadKE, q.dh.Public()})
		q.dh = nil
	}
	out = append(out, q.ids...)
	out = append(out, e.natOA(p, false)...)
	// Our own lifetime when shorter than the one offered (RFC 2407 §4.6.3.1).
	mine := Phase2Life{Time: e.cfg.ChildLifetime, KB: e.cfg.ChildLifetimeBytes / 1024}
	var attrs []Attribute
	if q.life.Time == 0 || mine.Time < q.life.Time {
		q.life.Time = mine.Time
		attrs = append(attrs, Attribute{AttrSALifeType, LifeSeconds}, Attribute{AttrSALifeDur, uint64(mine.Time / time.Second)})
	}
	if mine.KB > 0 && (q.life.KB == 0 || mine.KB < q.life.KB) {
		q.life.KB = mine.KB
		attrs = append(attrs, Attribute{AttrSALifeType, LifeKilobytes}, Attribute{AttrSALifeDur, mine.KB})
	}
	if attrs != nil {
		out = append(out, Payload{PayloadNotify, Notify{Protocol: ProtoESP, Type: NotifyResponderLifetime, SPI: be32(q.spiOut),
			Data: appendAttributes(nil, attrs)}.Encode()})
	}
	h2 := p.suite.PRF.Sum(p.keys.A, be32(q.msgID), q.ni, AppendPayloads(nil, out))
	msg, err := e.encrypt(p.header(ExchangeQuick, q.msgID, 0), append([]Payload{{PayloadHash, h2}}, out...), p.keys.Enc, &q.iv)
	if err != nil {
		return err
	}
	q.lastIn = raw
	p.quicks[q.msgID] = q
	e.arm(&q.retry, now, msg)
	return nil
}

// refuseQuick tells the peer (informational, protected) and fails.
func (e *Engine) refuseQuick(p *phase1, err error) error {
	e.sendInfo(p, PayloadNotify, Notify{Protocol: ProtoESP, Type: NotifyNoProposalChosen}.Encode())
	return err
}

func (e *Engine) quickInitiator2(now time.Time, p *phase1, q *quick, m *Message, raw []byte) error {
	ps, hash, rest, err := e.quickPlain(p, q, m)
	if err != nil {
		return err
	}
	if want := p.suite.PRF.Sum(p.keys.A, be32(q.msgID), q.ni, rest); !ike.Secret(want).Equal(hash) {
		e.drop(ike.DropIntegrity)
		return fmt.Errorf("HASH(2) does not verify")
	}
	sap, nonce := Find(ps, PayloadSA), Find(ps, PayloadNonce)
	if sap == nil || nonce == nil || len(nonce.Body) < 8 || len(nonce.Body) > 256 {
		return fmt.Errorf("SA or nonce missing")
	}
	sa, err := DecodeSA(sap.Body)
	if err != nil {
		return err
	}
	if len(sa.Proposals) != 1 || len(sa.Proposals[0].Transforms) != 1 || len(sa.Proposals[0].SPI) != 4 {
		return fmt.Errorf("the answer's SA is not one ESP proposal with one transform")
	}
	s, encap, life, ok := phase2Of(sa.Proposals[0].Transforms[0])
	offered := false
	for _, o := range e.suites2 {
		offered = offered || phase2Matches(s, o)
	}
	if !ok || !offered || encap != e.encapMode(p) {
		return fmt.Errorf("the peer chose %s, which we did not offer", transformsString(sa.Proposals[0], false))
	}
	if _, err := e.checkIDs(p, ps, true); err != nil {
		return err
	}
	q.suite, q.life, q.nr = s, life, clone(nonce.Body)
	q.spiOut = binary.BigEndian.Uint32(sa.Proposals[0].SPI)
	if q.life.Time == 0 {
		q.life.Time = e.cfg.ChildLifetime
	}
	for _, np := range All(ps, PayloadNotify) {
		if n, err := DecodeNotify(np.Body); err == nil && n.Type == NotifyResponderLifetime {
			e.responderLifetime(q, n.Data)
		}
	}
	if s.PFS != ike.DHNone {
		ke := Find(ps, PayloadKE)
		if ke == nil || q.dh == nil {
			return fmt.Errorf("PFS with %v but no KE", s.PFS)
		}
		if q.gxy, err = q.dh.Shared(ke.Body); err != nil {
			e.drop(ike.DropBadKE)
			return err
		}
	}
	q.dh = nil
	h3 := p.suite.PRF.Sum(p.keys.A, []byte{0}, be32(q.msgID), q.ni, q.nr)
	msg, err := e.encrypt(p.header(ExchangeQuick, q.msgID, 0), []Payload{{PayloadHash, h3}}, p.keys.Enc, &q.iv)
	if err != nil {
		return err
	}
	q.retry = retry{}
	q.lastIn, q.lastOut = raw, msg
	e.write(msg)
	return e.install(now, p, q)
}

// maxLifeKB keeps a kilobyte lifetime's byte count (KB * 1024) in a
// uint64.
const maxLifeKB = 1<<54 - 1

// boundLife is the lifetime a phase 2 SA gets: the peer's when shorter
// than ours, never longer (the answer to our Quick Mode, its
// RESPONDER-LIFETIME, may name any), and a byte count that fits.
func (e *Engine) boundLife(l Phase2Life) Phase2Life {
	if l.Time <= 0 || l.Time > e.cfg.ChildLifetime {
		l.Time = e.cfg.ChildLifetime
	}
	if mine := e.cfg.ChildLifetimeBytes / 1024; mine > 0 && (l.KB == 0 || l.KB > mine) {
		l.KB = mine
	}
	l.KB = min(l.KB, maxLifeKB)
	return l
}

// responderLifetime applies the responder's shorter lifetime.
func (e *Engine) responderLifetime(q *quick, data []byte) {
	attrs, err := decodeAttributes(data)
	if err != nil {
		return
	}
	lifeType := uint64(LifeSeconds)
	for _, a := range attrs {
		switch a.Type {
		case AttrSALifeType:
			lifeType = a.Value
		case AttrSALifeDur:
			if lifeType == LifeSeconds && a.Value > 0 && a.Value < 1<<32 {
				q.life.Time = time.Duration(a.Value) * time.Second
			} else if lifeType == LifeKilobytes && a.Value > 0 {
				q.life.KB = a.Value
			}
		}
	}
	e.log.Info("RESPONDER-LIFETIME", zap.Duration("seconds", q.life.Time), zap.Uint64("kilobytes", q.life.KB))
}

func (e *Engine) quickResponder3(now time.Time, p *phase1, q *quick, m *Message) error {
	ps, hash, rest, err := e.quickPlain(p, q, m)
	if err != nil {
		return err
	}
	_ = ps
	if len(rest) != 0 {
		return fmt.Errorf("HASH(3) message carries more payloads")
	}
	if want := p.suite.PRF.Sum(p.keys.A, []byte{0}, be32(q.msgID), q.ni, q.nr); !ike.Secret(want).Equal(hash) {
		e.drop(ike.DropIntegrity)
		return fmt.Errorf("HASH(3) does not verify")
	}
	q.retry = retry{}
	return e.install(now, p, q)
}

// install derives both directions' keys and hands them to the data plane.
func (e *Engine) install(now time.Time, p *phase1, q *quick) error {
	q.life = e.boundLife(q.life)
	n := q.suite.ESP.KeyLen() + q.suite.ESP.IntegKeyLen()
	in := QuickKeymat(p.suite.PRF, p.keys.D, q.gxy, ProtoESP, q.spiIn, q.ni, q.nr, n)
	out := QuickKeymat(p.suite.PRF, p.keys.D, q.gxy, ProtoESP, q.spiOut, q.ni, q.nr, n)
	q.gxy.Wipe()
	q.gxy = nil
	q.done, q.doneAt = true, now
	k := ike.ChildKeys{SPIIn: q.spiIn, SPIOut: q.spiOut, KeyIn: in, KeyOut: out, Suite: q.suite.ESP,
		Transform: q.suite.ESP.Transform(), Lifetime: q.life.Time, LifetimeBytes: q.life.KB * 1024,
		ReplayWindow: e.cfg.ReplayWindow, UDPPeer: e.udpPeer(p)}
	// A rekey we initiate keeps sending on the old SA a moment: the peer
	// installs the new one only when our HASH(3) arrives, and nothing
	// tells us when that was.
	_, canSwitch := e.dp.(ike.OutboundSwitcher)
	k.KeepOutbound = q.initiator && q.replaces != nil && canSwitch
	if err := e.dp.InstallChild(k); err != nil {
		in.Wipe()
		out.Wipe()
		return fmt.Errorf("data plane: %w", err)
	}
	c := &child{spiIn: q.spiIn, spiOut: q.spiOut, keys: k, installed: now, expires: now.Add(q.life.Time),
		rekeyAt: now.Add(q.life.Time - rekeyLead(q.life.Time)), initiator: q.initiator, replaces: q.replaces, pfs: q.suite.PFS}
	if k.KeepOutbound {
		c.switchAt = now.Add(switchDelay)
	}
	e.children = append(e.children, c)
	e.counts.exchange("quick_mode", q.initiator, ResultOK)
	e.log.Info("phase 2 SA installed", zap.String("spi_in", fmt.Sprintf("0x%08x", q.spiIn)), zap.String("spi_out", fmt.Sprintf("0x%08x", q.spiOut)),
		zap.String("transform", k.Transform), zap.Stringer("pfs", q.suite.PFS), zap.Duration("lifetime", q.life.Time),
		zap.Uint64("lifetime_kb", q.life.KB), zap.Bool("initiator", q.initiator))
	if c.switchAt.IsZero() && c.replaces != nil {
		if slices.Contains(e.children, c.replaces) {
			e.deleteChild(c.replaces, true)
		}
		c.replaces = nil
	}
	return nil
}

// switchDelay is how long a rekeying initiator keeps sending on the old
// SA after installing the new one: time for HASH(3) to reach the peer.
const switchDelay = time.Second

// deleteChild removes c, telling the peer if tell.
func (e *Engine) deleteChild(c *child, tell bool) {
	e.takeOver(c)
	for i, x := range e.children {
		if x == c {
			e.children = append(e.children[:i], e.children[i+1:]...)
			break
		}
	}
	if p := e.established(); tell && p != nil {
		e.sendInfo(p, PayloadDelete, Delete{Protocol: ProtoESP, SPIs: [][]byte{be32(c.spiIn)}}.Encode())
	}
	_ = e.dp.RemoveChild(c.spiIn)
	e.wipeChild(c)
}

// childTimers rekeys (make-before-break) and expires phase 2 SAs. The
// side that initiates rekeys; the other deletes on expiry only.
func (e *Engine) childTimers(now time.Time) {
	for _, c := range append([]*child(nil), e.children...) {
		if !c.switchAt.IsZero() && !now.Before(c.switchAt) {
			c.switchAt = time.Time{}
			if s, ok := e.dp.(ike.OutboundSwitcher); ok {
				if err := s.SetOutbound(c.spiIn); err != nil {
					e.log.Warn("switching to the new phase 2 SA", zap.Error(err))
				}
			}
			if c.replaces != nil && slices.Contains(e.children, c.replaces) {
				e.deleteChild(c.replaces, true)
			}
			c.replaces = nil
		}
		if !now.Before(c.expires) {
			e.log.Info("phase 2 SA expired", zap.String("spi_in", fmt.Sprintf("0x%08x", c.spiIn)))
			e.deleteChild(c, true)
			continue
		}
		if e.cfg.Initiate && !c.rekeying && !now.Before(c.rekeyAt) {
			if p := e.established(); p != nil {
				c.rekeying = true
				e.startQuick(now, p, c)
			}
		}
		if kb := c.keys.LifetimeBytes; kb > 0 && e.cfg.Initiate && !c.rekeying {
			in, out := e.dp.ChildBytes(c.spiIn)
			if max(in, out) >= kb-kb/rekeyMargin {
				if p := e.established(); p != nil {
					c.rekeying = true
					e.startQuick(now, p, c)
				}
			}
		}
	}
	if e.cfg.Initiate && len(e.children) == 0 && e.nextStart.IsZero() {
		if p := e.established(); p != nil && !p.quickPending() {
			e.startQuick(now, p, nil)
		}
	}
}

// quickPending: a Quick Mode of ours is under way.
func (p *phase1) quickPending() bool {
	for _, q := range p.quicks {
		if q.initiator && !q.done {
			return true
		}
	}
	return false
}

// rekeyLead is how long before its end an SA is rekeyed: a tenth of its
// life, but at least time for an exchange and the switch to the new SA
// (half of a short life).
func rekeyLead(life time.Duration) time.Duration {
	return max(life/rekeyMargin, min(life/2, 10*time.Second))
}

// takeOver: c is about to go; an SA that rekeyed it and waits to send
// sends now.
func (e *Engine) takeOver(c *child) {
	for _, x := range e.children {
		if x.replaces == c {
			x.replaces, x.switchAt = nil, time.Time{}
			if s, ok := e.dp.(ike.OutboundSwitcher); ok {
				_ = s.SetOutbound(x.spiIn)
			}
		}
	}
}
