package ike

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
)

// IKE fragmentation (RFC 7383). Both peers announce it with
// IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT; from IKE_AUTH on, a
// message that would not fit in one datagram of Config.FragmentSize goes
// as Encrypted Fragment (SKF) payloads, each protected on its own, so
// that no IP fragment of it is needed: IP fragments are what NATs and
// firewalls drop.
//
// Receiving, each fragment is authenticated before it is kept (§2.6), so
// only the peer itself can make us hold anything; what it can make us
// hold is bounded: one message per IKE SA and direction (requests from
// the peer, responses to ours), at most maxFragments fragments and
// maxReassembled bytes of plaintext, fewer (maxUnauthReassembled) while
// the IKE SA is not yet authenticated, as anyone may complete an
// IKE_SA_INIT exchange with us.

const (
	// DefaultFragmentSize is the largest IP datagram carrying a fragment
	// when Config.FragmentSize is 0: IPv6's minimum MTU, strongSwan's
	// charon.fragment_size default, used for IPv4 too (RFC 7383 §2.5.1
	// suggests 576 for IPv4; the paths we meet carry 1280).
	DefaultFragmentSize = 1280
	// skfHeaderLen: generic header, Fragment Number, Total Fragments.
	skfHeaderLen = genericHeaderLen + 4
	// maxFragments bounds Total Fragments, sent and received.
	maxFragments = 128
	// maxReassembled bounds the plaintext of one reassembled message.
	maxReassembled = MaxMessageLen
	// maxUnauthReassembled bounds it before the IKE SA is authenticated:
	// a PSK IKE_AUTH is well under 2 KiB; 1024 half-open SAs hold at most
	// 8 MiB of fragments.
	maxUnauthReassembled = 8 << 10
	// udpMarker: UDP header and the non-ESP marker of port 4500, reserved
	// on every port for simplicity.
	udpMarker = 8 + 4
)

// EncryptedFragment is the Encrypted Fragment payload (RFC 7383 §2.5) as
// it travels: First names the first inner payload (fragment 1 only), Data
// is IV || ciphertext || ICV.
type EncryptedFragment struct {
	First  PayloadType
	Number uint16 // 1..Total
	Total  uint16
	Data   []byte
}

func (*EncryptedFragment) Type() PayloadType { return PayloadSKF }
func (f *EncryptedFragment) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, f.Number)
	b = binary.BigEndian.AppendUint16(b, f.Total)
	return append(b, f.Data...)
}

func decodeFragment(first PayloadType, body []byte) (*EncryptedFragment, error) {
	if len(body) < 4 {
		return nil, malformed(PayloadSKF, "%d bytes", len(body))
	}
	f := &EncryptedFragment{First: first, Number: binary.BigEndian.Uint16(body), Total: binary.BigEndian.Uint16(body[2:]),
		Data: clone(body[4:])}
	if f.Number == 0 || f.Total == 0 || f.Number > f.Total {
		return nil, malformed(PayloadSKF, "fragment %d of %d", f.Number, f.Total)
	}
	return f, nil
}

// fragmentOf returns m's Encrypted Fragment payload (always its last), or
// nil.
func fragmentOf(m *Message) *EncryptedFragment {
	if len(m.Payloads) == 0 {
		return nil
	}
	f, _ := m.Payloads[len(m.Payloads)-1].(*EncryptedFragment)
	return f
}

// fragCipher protects one fragment's content; both SK ciphers implement
// it. The AAD (AEAD) or the ICV (CBC) covers the datagram up to the
// encrypted body: IKE header, SKF header, Fragment Number and Total.
type fragCipher interface {
	// bodyLen is the encrypted body's length for n bytes of content: IV,
	// content, padding, pad length, ICV.
	bodyLen(n int) int
	// sealBody appends the encrypted body of content to hdr, the
	// datagram up to it with every length field final.
	sealBody(hdr, content []byte) ([]byte, error)
	// openBody authenticates raw, whose encrypted body starts at
	// bodyStart and runs to its end, and returns the content.
	openBody(raw []byte, bodyStart int) ([]byte, error)
}

var errFragPadding = errors.New("ike: fragment pad length exceeds its plaintext")

func (c *aeadSK) bodyLen(n int) int { return gcmIVLen + n + 1 + c.aead.Overhead() }

func (c *aeadSK) sealBody(hdr, content []byte) ([]byte, error) {
	c.iv++
	var nonce [gcmSaltLen + gcmIVLen]byte
	copy(nonce[:], c.salt[:])
	binary.BigEndian.PutUint64(nonce[gcmSaltLen:], c.iv)
	aadLen := len(hdr)
	b := append(hdr, nonce[gcmSaltLen:]...)
	plain := append(append(make([]byte, 0, len(content)+1), content...), 0) // no padding
	return c.aead.Seal(b, nonce[:], plain, b[:aadLen]), nil
}

func (c *aeadSK) openBody(raw []byte, bodyStart int) ([]byte, error) {
	data := raw[bodyStart:]
	if len(data) < gcmIVLen+1+c.aead.Overhead() {
		return nil, malformed(PayloadSKF, "%d bytes", len(data))
	}
	var nonce [gcmSaltLen + gcmIVLen]byte
	copy(nonce[:], c.salt[:])
	copy(nonce[gcmSaltLen:], data[:gcmIVLen])
	plain, err := c.aead.Open(nil, nonce[:], data[gcmIVLen:], raw[:bodyStart])
	if err != nil {
		return nil, ErrIntegrity
	}
	return unpad(plain)
}

func (c *cbcSK) bodyLen(n int) int {
	return aes.BlockSize + n + cbcPad(n) + 1 + c.icvLen
}

// cbcPad pads n content bytes and the pad length byte to the block.
func cbcPad(n int) int { return (aes.BlockSize - (n+1)%aes.BlockSize) % aes.BlockSize }

func (c *cbcSK) sealBody(hdr, content []byte) ([]byte, error) {
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(c.rand, iv); err != nil {
		return nil, err
	}
	b := append(hdr, iv...)
	start := len(b)
	pad := cbcPad(len(content))
	b = append(b, content...)
	b = append(b, make([]byte, pad)...)
	b = append(b, byte(pad))
	cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(b[start:], b[start:])
	return append(b, c.icv(b)...), nil
}

func (c *cbcSK) openBody(raw []byte, bodyStart int) ([]byte, error) {
	data := raw[bodyStart:]
	ct := len(data) - aes.BlockSize - c.icvLen
	if ct < aes.BlockSize || ct%aes.BlockSize != 0 {
		return nil, malformed(PayloadSKF, "%d bytes", len(data))
	}
	if !hmac.Equal(c.icv(raw[:len(raw)-c.icvLen]), raw[len(raw)-c.icvLen:]) {
		return nil, ErrIntegrity
	}
	plain := make([]byte, ct)
	cipher.NewCBCDecrypter(c.block, data[:aes.BlockSize]).CryptBlocks(plain, data[aes.BlockSize:aes.BlockSize+ct])
	return unpad(plain)
}

func unpad(plain []byte) ([]byte, error) {
	pad := int(plain[len(plain)-1])
	if pad > len(plain)-1 {
		return nil, errFragPadding
	}
	return plain[:len(plain)-1-pad], nil
}

// fragmentLimit is the largest IKE message (IKE header onwards) that goes
// in one datagram of FragmentSize to the peer.
func (e *Engine) fragmentLimit() int {
	size := e.cfg.FragmentSize
	if size <= 0 {
		size = DefaultFragmentSize
	}
	ip := 20
	if !e.cfg.Remote.Unmap().Is4() {
		ip = 40
	}
	return size - ip - udpMarker
}

// fragPayloads is the IKEV2_FRAGMENTATION_SUPPORTED notify for sa's
// IKE_SA_INIT message: the initiator's whenever fragmentation is on, the
// responder's only in answer to the initiator's (§2.3).
func (e *Engine) fragPayloads(sa *ikeSA) Payloads {
	if e.cfg.NoFragmentation || !sa.initiator && !sa.frag.on {
		return nil
	}
	return Payloads{&Notify{Kind: IKEV2_FRAGMENTATION_SUPPORTED}}
}

// fragAgree notes whether fragmentation is used on sa, from the peer's
// IKE_SA_INIT payloads.
func (e *Engine) fragAgree(sa *ikeSA, ps Payloads) {
	sa.frag.on = !e.cfg.NoFragmentation && ps.Notify(IKEV2_FRAGMENTATION_SUPPORTED) != nil
}

// seal protects m with inner: one datagram, or, when that would exceed
// the fragment limit and both peers use fragmentation, its fragments.
func (e *Engine) seal(sa *ikeSA, m *Message, inner Payloads) ([][]byte, error) {
	raw, err := sa.protect(m, inner)
	if err != nil {
		return nil, err
	}
	limit := e.fragmentLimit()
	if !sa.frag.on || len(raw) <= limit || m.Exchange == IKE_SA_INIT || len(m.Payloads) > 0 {
		return [][]byte{raw}, nil
	}
	fc, ok := sa.out.(fragCipher)
	if !ok {
		return [][]byte{raw}, nil
	}
	frags, err := fragment(fc, m, inner, limit)
	if err != nil {
		// The path may still carry it whole (in IP fragments).
		e.log.Warn("cannot fragment; sending the message whole", append(e.saFields(sa, m), zap.Error(err))...)
		return [][]byte{raw}, nil
	}
	return frags, nil
}

// fragment protects m's inner payloads as Encrypted Fragments of at most
// limit bytes each (§2.5).
func fragment(fc fragCipher, m *Message, inner Payloads, limit int) ([][]byte, error) {
	content, err := appendChain(nil, inner)
	if err != nil {
		return nil, err
	}
	chunk := limit - HeaderLen - skfHeaderLen - fc.bodyLen(0)
	for chunk > 0 && HeaderLen+skfHeaderLen+fc.bodyLen(chunk) > limit {
		chunk--
	}
	if chunk < 1 {
		return nil, fmt.Errorf("ike: fragment limit of %d bytes leaves no room for content", limit)
	}
	total := (len(content) + chunk - 1) / chunk
	if total > maxFragments {
		return nil, fmt.Errorf("ike: %d bytes would take %d fragments", len(content), total)
	}
	out := make([][]byte, 0, total)
	for i := range total {
		part := content[i*chunk : min((i+1)*chunk, len(content))]
		first := PayloadNone
		if i == 0 {
			first = firstType(inner)
		}
		b, err := sealFragment(fc, m, first, uint16(i+1), uint16(total), part)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// sealFragment builds one protected fragment datagram of m (whose header
// fields it takes; m carries no clear payloads).
func sealFragment(fc fragCipher, m *Message, first PayloadType, number, total uint16, part []byte) ([]byte, error) {
	skfLen := skfHeaderLen + fc.bodyLen(len(part))
	if HeaderLen+skfLen > MaxMessageLen {
		return nil, fmt.Errorf("ike: fragment of %d bytes", HeaderLen+skfLen)
	}
	b := m.appendHeader(make([]byte, 0, HeaderLen+skfLen))
	Header(b).SetNextPayload(PayloadSKF)
	Header(b).SetLength(uint32(HeaderLen + skfLen))
	b = append(b, byte(first), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(skfLen))
	b = binary.BigEndian.AppendUint16(b, number)
	b = binary.BigEndian.AppendUint16(b, total)
	return fc.sealBody(b, part)
}

// writeAll sends a request: one datagram or all its fragments, to the
// peer.
func (e *Engine) writeAll(packets [][]byte) { e.sendAll(packets, e.write) }

// replyAll sends a response the way the request came (nat.go's reply).
func (e *Engine) replyAll(packets [][]byte) { e.sendAll(packets, e.reply) }

func (e *Engine) sendAll(packets [][]byte, send func([]byte)) {
	for _, p := range packets {
		send(p)
	}
	if len(packets) > 1 {
		e.counters.FragmentsSent += uint64(len(packets))
	}
}

// fragState is an IKE SA's fragmentation: whether both peers use it, and
// the messages being reassembled, one per direction.
type fragState struct {
	on   bool
	req  reassembly // the peer's request
	resp reassembly // the response to our request
}

// reassembly collects the fragments of one message.
type reassembly struct {
	msgID uint32
	total uint16 // 0: nothing being reassembled
	first PayloadType
	have  int
	bytes int
	parts [][]byte // content by Fragment Number - 1
	// digest identifies a request by its fragment 1, for retransmissions
	// (§2.6.1).
	digest [sha256.Size]byte
}

func (r *reassembly) reset() { *r = reassembly{} }

// add keeps an authentic fragment's content; it returns the whole
// message's content once every fragment is in, or the reason the
// fragment was not kept (0 and nil: kept, more to come).
func (r *reassembly) add(msgID uint32, f *EncryptedFragment, content []byte, raw []byte, limit int) (whole []byte, drop DropReason, dropped bool) {
	switch {
	case r.total == 0 || r.msgID != msgID || f.Total > r.total:
		// A new message, or the sender restarted with more, smaller
		// fragments (§2.6: start again with these).
		*r = reassembly{msgID: msgID, total: f.Total, parts: make([][]byte, f.Total)}
	case f.Total < r.total:
		return nil, DropFragment, true // §2.6: an older, larger fragmentation
	case r.parts[f.Number-1] != nil:
		return nil, DropFragment, true // duplicate
	}
	if r.bytes+len(content) > limit {
		r.reset()
		return nil, DropFragmentLimit, true
	}
	if content == nil {
		content = []byte{} // an empty fragment is still present
	}
	r.parts[f.Number-1] = content
	r.have++
	r.bytes += len(content)
	if f.Number == 1 {
		r.first = f.First
		r.digest = requestDigest(raw)
	}
	if r.have < int(r.total) {
		return nil, 0, false
	}
	whole = make([]byte, 0, r.bytes)
	for _, p := range r.parts {
		whole = append(whole, p...)
	}
	return whole, 0, false
}

// openFragment authenticates and decrypts one fragment on sa.
func (sa *ikeSA) openFragment(m *Message, raw []byte, f *EncryptedFragment) ([]byte, error) {
	fc, ok := sa.in.(fragCipher)
	if sa.in == nil || !ok {
		return nil, errors.New("ike: IKE SA has no keys yet")
	}
	if m.FromInitiator() == sa.initiator {
		return nil, errors.New("ike: message has our own initiator flag")
	}
	return fc.openBody(raw, len(raw)-len(f.Data))
}

// handleFragment takes one datagram carrying an Encrypted Fragment: it is
// checked like an SK message (SA, message ID, integrity), kept, and, with
// the last missing fragment, the message is processed as if it had come
// whole.
func (e *Engine) handleFragment(now time.Time, m *Message, raw []byte, f *EncryptedFragment) {
	if m.Exchange == IKE_SA_INIT {
		e.drop(DropMalformed) // §2.5: IKE_SA_INIT is never fragmented
		return
	}
	if f.Total > maxFragments {
		e.drop(DropFragmentLimit)
		return
	}
	if m.IsResponse() {
		e.fragmentedResponse(now, m, raw, f)
		return
	}
	sa := e.findSA(m.SPIi, m.SPIr)
	if sa != nil && !sa.keyed() && e.keyHalfOpen(sa) != nil {
		e.removeSA(sa)
		sa = nil
	}
	if sa == nil || !sa.keyed() {
		e.drop(DropUnknownSA)
		e.hintInvalidIKESPI(now, m)
		return
	}
	if !e.admitRequest(sa, m, raw, f.Number == 1) {
		return
	}
	if !sa.frag.on {
		e.drop(DropUnexpected) // not negotiated (§2.3)
		return
	}
	whole, ok := e.collect(sa, &sa.frag.req, m, raw, f)
	if !ok {
		return
	}
	digest := sa.frag.req.digest
	first := sa.frag.req.first
	sa.frag.req.reset()
	inner, err := innerFromFragments(first, whole)
	e.answerRequest(now, sa, m, inner, err, digest)
}

func (e *Engine) fragmentedResponse(now time.Time, m *Message, raw []byte, f *EncryptedFragment) {
	var sa *ikeSA
	for _, x := range e.sas {
		if x.initiatorOfReq(m) {
			sa = x
			break
		}
	}
	if sa == nil || sa.req == nil || sa.req.id != m.MessageID || sa.req.exchange != m.Exchange || !sa.frag.on {
		e.drop(DropUnexpected)
		return
	}
	whole, ok := e.collect(sa, &sa.frag.resp, m, raw, f)
	if !ok {
		return
	}
	first := sa.frag.resp.first
	sa.frag.resp.reset()
	inner, err := innerFromFragments(first, whole)
	e.answered(now, sa, sa.req, m, nil, inner, err)
}

// collect authenticates a fragment and adds it to r; ok with the whole
// content once the message is complete.
func (e *Engine) collect(sa *ikeSA, r *reassembly, m *Message, raw []byte, f *EncryptedFragment) ([]byte, bool) {
	content, err := sa.openFragment(m, raw, f)
	switch {
	case errors.Is(err, errFragPadding):
		e.drop(DropMalformed)
		return nil, false
	case err != nil:
		e.drop(DropIntegrity)
		e.log.Debug("fragment failed integrity", append(e.saFields(sa, m), zap.Error(err))...)
		return nil, false
	}
	e.counters.FragmentsReceived++
	limit := maxReassembled
	if sa.state == saConnecting {
		limit = maxUnauthReassembled
	}
	whole, reason, dropped := r.add(m.MessageID, f, content, raw, limit)
	if dropped {
		e.drop(reason)
		return nil, false
	}
	if whole == nil {
		return nil, false
	}
	e.counters.FragmentsReassembled++
	e.log.Debug("message reassembled", append(e.saFields(sa, m), zap.Uint16("fragments", f.Total))...)
	return whole, true
}

// innerFromFragments decodes a reassembled message's inner payloads; an
// error wraps ErrInnerSyntax, as for an SK payload.
func innerFromFragments(first PayloadType, content []byte) (Payloads, error) {
	n := 0
	inner, err := decodeChain(first, content, false, &n)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInnerSyntax, err)
	}
	return inner, nil
}
