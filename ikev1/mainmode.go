package ikev1

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/gresec/gresec/ike"
)

// p1State follows the phase 1 SA through Main Mode, named as IOS's
// `show crypto isakmp sa` shows them.
type p1State uint8

const (
	stateNoState     p1State = iota // SA proposed / answered
	stateSASetup                    // KE and nonces sent
	stateKeyExch                    // keys derived, identities under way
	stateEstablished                // authenticated: Quick Modes may run
)

func (s p1State) String() string {
	return [...]string{"MM_NO_STATE", "MM_SA_SETUP", "MM_KEY_EXCH", "QM_IDLE"}[s]
}

// phase1 is one ISAKMP SA, set up by Main Mode.
type phase1 struct {
	initiator bool
	ic, rc    uint64
	state     p1State
	since     time.Time // created, then established
	created   time.Time
	expires   time.Time
	rekeyAt   time.Time
	rekeyed   bool
	suite     Phase1Suite
	saiB      []byte // the initiator's SA payload body, for HASH_I/HASH_R
	dh        *ike.DHKey
	gxi, gxr  []byte
	ni, nr    []byte
	keys      Phase1Keys
	iv        []byte // CBC state: the last block of the last phase 1 message
	peerID    ike.ID
	peerDPD   bool // the peer sent RFC 3706's vendor ID
	nat       natFlags
	// lastIn is the last request answered; its retransmission gets
	// lastOut again without any processing.
	lastIn, lastOut []byte
	retry           retry
	quicks          map[uint32]*quick
}

func (p *phase1) cookies() []byte { return append(be64(p.ic), be64(p.rc)...) }
func (p *phase1) spis() string    { return fmt.Sprintf("%016x_i %016x_r", p.ic, p.rc) }

func (p *phase1) wipe() {
	p.keys.Wipe()
	for _, q := range p.quicks {
		q.wipe()
	}
}

func (p *phase1) header(x Exchange, msgID uint32, flags uint8) Header {
	return Header{ICookie: p.ic, RCookie: p.rc, Exchange: x, MsgID: msgID, Flags: flags}
}

// startMain sends Main Mode's first message.
func (e *Engine) startMain(now time.Time) {
	if len(e.p1s) >= maxPhase1+maxHalfOpen {
		return
	}
	p := &phase1{initiator: true, since: now, created: now, quicks: map[uint32]*quick{}}
	for p.ic == 0 {
		p.ic = binary.BigEndian.Uint64(e.random(8))
	}
	p.saiB = phase1SA(e.suites1).Encode()
	ps := []Payload{{PayloadSA, p.saiB}, {PayloadVendor, VendorDPD}}
	if e.offersNATT() {
		ps = append(ps, Payload{PayloadVendor, VendorNATT})
	}
	msg := Encode(p.header(ExchangeMain, 0, 0), ps)
	e.p1s = append(e.p1s, p)
	e.log.Info("initiating Main Mode", zap.String("peer", e.peer.String()), zap.String("proposals", suites1String(e.suites1)))
	e.arm(&p.retry, now, msg)
}

func suites1String(ss []Phase1Suite) string {
	var b bytes.Buffer
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s.String())
	}
	return b.String()
}

// mainResponder1 answers a first Main Mode message. Its state is small
// and capped; the DH work waits for the third message, which must carry
// the cookie we answer with.
func (e *Engine) mainResponder1(now time.Time, m *Message, raw []byte) {
	for _, p := range e.p1s {
		if !p.initiator && p.ic == m.ICookie {
			if bytes.Equal(raw, p.lastIn) && p.lastOut != nil {
				e.reply(p.lastOut) // our answer was lost
			} else {
				e.drop(ike.DropRetransmitMismatch)
			}
			return
		}
	}
	if !e.makeHalfOpenRoom() {
		e.drop(ike.DropCookie)
		return
	}
	sap := Find(m.Payloads, PayloadSA)
	if sap == nil {
		e.drop(ike.DropMalformed)
		return
	}
	sa, err := DecodeSA(sap.Body)
	if err != nil {
		e.drop(ike.DropMalformed)
		return
	}
	suite, echo, ok := selectPhase1(e.suites1, sa)
	if !ok {
		// Unauthenticated: logged only now and then (a forged flood of
		// them must not flood the log), and still answered, as our
		// answer goes to the configured peer only.
		if n := e.noPropLogged.Add(1); n == 1 || n%100 == 0 {
			var theirs []string
			for _, p := range sa.Proposals {
				theirs = append(theirs, transformsString(p, true))
			}
			e.log.Warn("Main Mode: no proposal chosen", zap.Strings("peer_proposals", theirs), zap.String("ours", suites1String(e.suites1)),
				zap.Uint64("refused", n))
		}
		e.drop(ike.DropUnexpected)
		h := Header{ICookie: m.ICookie, Exchange: ExchangeInfo}
		e.reply(Encode(h, []Payload{{PayloadNotify, Notify{Protocol: ProtoISAKMP, Type: NotifyNoProposalChosen}.Encode()}}))
		return
	}
	p := &phase1{ic: m.ICookie, rc: e.responderCookie(m.ICookie), since: now, created: now, suite: suite, saiB: clone(sap.Body), quicks: map[uint32]*quick{},
		peerDPD: hasDPD(m.Payloads)}
	p.nat.natt = e.offersNATT() && hasVendor(m.Payloads, VendorNATT)
	out := []Payload{{PayloadSA, SA{Proposals: []Proposal{echo}}.Encode()}, {PayloadVendor, VendorDPD}}
	if p.nat.natt {
		out = append(out, Payload{PayloadVendor, VendorNATT})
	}
	p.lastIn = raw
	p.lastOut = Encode(p.header(ExchangeMain, 0, 0), out)
	e.p1s = append(e.p1s, p)
	e.reply(p.lastOut)
}

// makeHalfOpenRoom frees a half-open slot for a new first message: when
// all are taken, the oldest that has seen no third message goes (counted
// as a cookie drop). Refusing the newcomer instead would let anyone who
// spoofs the peer's address lock the real peer out with a handful of
// first messages until they time out; evicting leaves a forger racing
// the peer's round trip, and an SA whose third message brought our
// cookie (and cost the DH work) is never evicted. False when every slot
// is such an SA.
func (e *Engine) makeHalfOpenRoom() bool {
	half := 0
	var oldest *phase1
	for _, p := range e.p1s {
		if p.initiator || p.state == stateEstablished {
			continue
		}
		half++
		if p.state == stateNoState && (oldest == nil || p.created.Before(oldest.created)) {
			oldest = p
		}
	}
	if half < maxHalfOpen {
		return true
	}
	if oldest == nil {
		return false
	}
	e.remove(oldest)
	e.drop(ike.DropCookie)
	return true
}

// main handles Main Mode messages 2 to 6.
func (e *Engine) main(now time.Time, p *phase1, m *Message, raw []byte) {
	if p.lastIn != nil && bytes.Equal(raw, p.lastIn) {
		if p.lastOut != nil {
			e.reply(p.lastOut)
		}
		return
	}
	var err error
	switch {
	case p.initiator && p.state == stateNoState && m.Encrypted == nil:
		err = e.mainInitiator2(now, p, m)
	case p.initiator && p.state == stateSASetup && m.Encrypted == nil:
		err = e.mainInitiator4(now, p, m)
	case p.initiator && p.state == stateKeyExch && m.Encrypted != nil:
		err = e.mainInitiator6(now, p, m)
	case !p.initiator && p.state == stateNoState && m.Encrypted == nil:
		err = e.mainResponder3(now, p, m, raw)
	case !p.initiator && p.state == stateSASetup && m.Encrypted != nil:
		err = e.mainResponder5(now, p, m, raw)
	default:
		e.drop(ike.DropUnexpected)
		return
	}
	if err != nil {
		e.log.Warn("Main Mode failed", zap.String("state", p.state.String()), zap.String("spi", p.spis()), zap.Error(err))
		e.counts.exchange("main_mode", p.initiator, ResultFailed)
		if p.initiator {
			e.remove(p)
			e.reconnect(now)
		} else if p.state != stateNoState || m.Encrypted != nil {
			e.remove(p)
		}
	}
}

func (e *Engine) mainInitiator2(now time.Time, p *phase1, m *Message) error {
	sap := Find(m.Payloads, PayloadSA)
	if sap == nil {
		return fmt.Errorf("no SA payload in the answer")
	}
	sa, err := DecodeSA(sap.Body)
	if err != nil {
		return err
	}
	if len(sa.Proposals) != 1 || len(sa.Proposals[0].Transforms) != 1 {
		return fmt.Errorf("the answer's SA has %d proposals, want one with one transform", len(sa.Proposals))
	}
	s, ok := phase1Of(sa.Proposals[0].Transforms[0])
	if !ok {
		return fmt.Errorf("the peer chose %s, which we did not offer", transformsString(sa.Proposals[0], true))
	}
	found := false
	for _, o := range e.suites1 {
		if o.KeyBits == s.KeyBits && o.PRF == s.PRF && o.DH == s.DH {
			found = true
			if s.Lifetime == 0 || s.Lifetime > o.Lifetime {
				s.Lifetime = o.Lifetime
			}
		}
	}
	if !found {
		return fmt.Errorf("the peer chose %s, which we did not offer", s)
	}
	p.rc, p.suite, p.peerDPD = m.RCookie, s, hasDPD(m.Payloads)
	p.nat.natt = e.offersNATT() && hasVendor(m.Payloads, VendorNATT)
	if p.dh, err = ike.GenerateDH(s.DH, e.rand); err != nil {
		return err
	}
	p.gxi, p.ni = p.dh.Public(), e.random(nonceLen)
	p.state = stateSASetup
	ps := []Payload{{PayloadKE, p.gxi}, {PayloadNonce, p.ni}}
	if p.nat.natt {
		ps = append(ps, e.natD(p, e.peer)...)
	}
	e.arm(&p.retry, now, Encode(p.header(ExchangeMain, 0, 0), ps))
	return nil
}

// keyExchange reads the peer's KE and nonce and derives the keys.
func (e *Engine) keyExchange(p *phase1, m *Message) error {
	ke, nonce := Find(m.Payloads, PayloadKE), Find(m.Payloads, PayloadNonce)
	if ke == nil || nonce == nil {
		return fmt.Errorf("KE or nonce missing")
	}
	if n := len(nonce.Body); n < 8 || n > 256 {
		return fmt.Errorf("nonce of %d bytes", n)
	}
	if err := ike.ValidatePublic(p.suite.DH, ke.Body); err != nil {
		e.drop(ike.DropBadKE)
		return err
	}
	if p.initiator {
		p.gxr, p.nr = clone(ke.Body), clone(nonce.Body)
	} else {
		var err error
		if p.dh, err = ike.GenerateDH(p.suite.DH, e.rand); err != nil {
			return err
		}
		p.gxi, p.ni = clone(ke.Body), clone(nonce.Body)
		p.gxr, p.nr = p.dh.Public(), e.random(nonceLen)
	}
	peer := p.gxr
	if !p.initiator {
		peer = p.gxi
	}
	gxy, err := p.dh.Shared(peer)
	if err != nil {
		e.drop(ike.DropBadKE)
		return err
	}
	defer gxy.Wipe()
	skeyid := SKEYIDPSK(p.suite.PRF, e.cfg.LocalPSK, p.ni, p.nr)
	p.keys = DerivePhase1(p.suite.PRF, skeyid, gxy, p.ic, p.rc, p.suite.KeyBits/8)
	if !e.cfg.RemotePSK.Equal(e.cfg.LocalPSK) {
		// Main Mode has one SKEYID for both directions: a second key
		// cannot be proven, so different keys cannot work.
		return fmt.Errorf("IKEv1 PSK authentication needs local and remote PSK to be the same")
	}
	p.iv = Phase1IV(p.suite.PRF, p.gxi, p.gxr)
	p.dh = nil
	return nil
}

func (e *Engine) mainInitiator4(now time.Time, p *phase1, m *Message) error {
	if err := e.keyExchange(p, m); err != nil {
		return err
	}
	e.checkNATD(p, m.Payloads)
	if p.nat.encap() && e.cfg.UDPEncap == ike.EncapNever {
		return fmt.Errorf("NAT detected, but udp_encap = \"never\" forbids ESP in UDP; set udp_encap = \"auto\"")
	}
	e.float(p)
	id := PhaseOneID(e.cfg.LocalID).Encode()
	hash := HashI(p.suite.PRF, p.keys.SKEYID, p.gxi, p.gxr, p.ic, p.rc, p.saiB, id)
	ps := []Payload{{PayloadID, id}, {PayloadHash, hash}}
	if e.established() == nil {
		ps = append(ps, Payload{PayloadNotify, Notify{Protocol: ProtoISAKMP, Type: NotifyInitialContact, SPI: p.cookies()}.Encode()})
	}
	msg, err := e.encrypt(p.header(ExchangeMain, 0, FlagEncryption), ps, p.keys.Enc, &p.iv)
	if err != nil {
		return err
	}
	p.state = stateKeyExch
	e.arm(&p.retry, now, msg)
	return nil
}

func (e *Engine) mainResponder3(now time.Time, p *phase1, m *Message, raw []byte) error {
	if err := e.keyExchange(p, m); err != nil {
		return err
	}
	p.state = stateSASetup
	e.checkNATD(p, m.Payloads)
	out := []Payload{{PayloadKE, p.gxr}, {PayloadNonce, p.nr}}
	if p.nat.natt {
		out = append(out, e.natD(p, e.nat.cur.from)...)
	}
	p.lastIn = raw
	p.lastOut = Encode(p.header(ExchangeMain, 0, 0), out)
	e.reply(p.lastOut)
	return nil
}

// identity decrypts message 5 or 6 and checks the peer's ID and hash.
func (e *Engine) identity(p *phase1, m *Message) ([]Payload, error) {
	plain, err := e.decrypt(p.keys.Enc, &p.iv, m)
	if err != nil {
		return nil, err
	}
	idp, hp := Find(plain, PayloadID), Find(plain, PayloadHash)
	if idp == nil || hp == nil {
		return nil, fmt.Errorf("ID or HASH missing")
	}
	id, err := DecodeID(idp.Body)
	if err != nil {
		return nil, err
	}
	var want []byte
	if p.initiator {
		want = HashR(p.suite.PRF, p.keys.SKEYID, p.gxi, p.gxr, p.ic, p.rc, p.saiB, idp.Body)
	} else {
		want = HashI(p.suite.PRF, p.keys.SKEYID, p.gxi, p.gxr, p.ic, p.rc, p.saiB, idp.Body)
	}
	if !ike.Secret(want).Equal(hp.Body) {
		return nil, fmt.Errorf("authentication failed: the peer's hash does not verify (different pre-shared key?)")
	}
	p.peerID = id.Identity()
	if e.cfg.RemoteID.Type != 0 && !e.cfg.RemoteID.Equal(p.peerID) {
		return nil, fmt.Errorf("the peer authenticated as %v, want %v", p.peerID, e.cfg.RemoteID)
	}
	return plain, nil
}

func (e *Engine) mainResponder5(now time.Time, p *phase1, m *Message, raw []byte) error {
	ps, err := e.identity(p, m)
	if err != nil {
		return err
	}
	e.notePeer(p)
	id := PhaseOneID(e.cfg.LocalID).Encode()
	hash := HashR(p.suite.PRF, p.keys.SKEYID, p.gxi, p.gxr, p.ic, p.rc, p.saiB, id)
	msg, err := e.encrypt(p.header(ExchangeMain, 0, FlagEncryption), []Payload{{PayloadID, id}, {PayloadHash, hash}}, p.keys.Enc, &p.iv)
	if err != nil {
		return err
	}
	p.lastIn, p.lastOut = raw, msg
	e.reply(msg)
	e.establish(now, p, ps)
	return nil
}

func (e *Engine) mainInitiator6(now time.Time, p *phase1, m *Message) error {
	ps, err := e.identity(p, m)
	if err != nil {
		return err
	}
	e.notePeer(p)
	p.retry = retry{}
	e.establish(now, p, ps)
	if len(e.children) == 0 {
		e.startQuick(now, p, nil) // a phase 1 rekey keeps the phase 2 SAs
	}
	return nil
}

// establish makes p the live phase 1 SA. INITIAL-CONTACT from the peer
// means it restarted: every older SA with it is stale.
func (e *Engine) establish(now time.Time, p *phase1, ps []Payload) {
	p.state, p.since = stateEstablished, now
	e.counts.exchange("main_mode", p.initiator, ResultOK)
	p.expires = now.Add(p.suite.Lifetime)
	p.rekeyAt = now.Add(p.suite.Lifetime - rekeyLead(p.suite.Lifetime))
	e.log.Info("phase 1 SA established", zap.String("spi", p.spis()), zap.String("suite", p.suite.String()),
		zap.Stringer("peer_id", p.peerID), zap.Bool("initiator", p.initiator), zap.Duration("lifetime", p.suite.Lifetime))
	for _, np := range All(ps, PayloadNotify) {
		if n, err := DecodeNotify(np.Body); err == nil && n.Type == NotifyInitialContact {
			e.initialContact(p)
		}
	}
	// Older phase 1 SAs beyond the cap go (the children stay: in IKEv1
	// they do not depend on the SA that made them).
	for len(e.p1s) > maxPhase1+maxHalfOpen {
		e.remove(e.p1s[0])
	}
	var older []*phase1
	for _, q := range e.p1s {
		if q != p && q.state == stateEstablished {
			older = append(older, q)
		}
	}
	if len(older) >= maxPhase1 {
		e.remove(older[0])
	}
}

func (e *Engine) initialContact(p *phase1) {
	// Only what was set up before the peer began this Main Mode is from
	// its previous life: when both sides initiate at once, the SAs of the
	// other exchange are the new life's too.
	var stale []*child
	for _, c := range e.children {
		if c.installed.Before(p.created) {
			stale = append(stale, c)
		}
	}
	e.log.Info("INITIAL-CONTACT: the peer restarted, removing older SAs", zap.Int("phase2", len(stale)))
	for _, q := range append([]*phase1(nil), e.p1s...) {
		if q != p && q.state == stateEstablished && q.since.Before(p.created) {
			e.remove(q)
		}
	}
	for _, c := range stale {
		e.deleteChild(c, false)
	}
}

// encrypt encodes ps and encrypts them with key, chaining from *iv,
// which it advances.
func (e *Engine) encrypt(h Header, ps []Payload, key []byte, iv *[]byte) ([]byte, error) {
	ct, next, err := Encrypt(key, *iv, AppendPayloads(nil, ps))
	if err != nil {
		return nil, err
	}
	*iv = next
	h.Flags |= FlagEncryption
	return appendMessage(h, ps, ct), nil
}

// decrypt decrypts m's body and decodes its payloads; *iv advances only
// if the payloads decode (a forged message leaves the chain alone).
func (e *Engine) decrypt(key []byte, iv *[]byte, m *Message) ([]Payload, error) {
	plain, next, err := Decrypt(key, *iv, m.Encrypted)
	if err != nil {
		e.drop(ike.DropMalformed)
		return nil, err
	}
	ps, err := DecodePayloads(m.Next, plain)
	if err != nil {
		e.drop(ike.DropIntegrity)
		return nil, fmt.Errorf("decrypted message does not decode (wrong key or forged): %w", err)
	}
	*iv = next
	return ps, nil
}
