package esp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

var (
	// ErrSequenceExhausted: the SA has sent sequence number MaxSeq and must
	// be replaced (RFC 4303 §3.3.3 forbids cycling the counter).
	ErrSequenceExhausted = errors.New("esp: sequence numbers exhausted, the SA needs rekeying")
	// ErrBufferTooSmall: Seal was given no room for the ESP prefix or suffix.
	ErrBufferTooSmall = errors.New("esp: buffer has no room for the ESP header or trailer")
)

// SA is one direction of an ESP security association: one SPI, one
// transform and its keys. Seal and Open are safe for concurrent use and do
// not allocate.
type SA struct {
	spi     uint32
	tr      Transform
	name    string // tr.Description(), for status
	created time.Time
	prefix  int    // SPI + seq + IV
	icvLen  int    //
	limit   uint64 // MaxSeq, or MaxSeqESN under ESN
	// The keys sit behind an interface whose implementations redact
	// themselves, so that printing an SA value with fmt never shows them.
	crypt crypter

	seq    atomic.Uint64 // last sequence number Seal took
	replay Window

	packets atomic.Uint64
	bytes   atomic.Uint64
	drops   dropCounters

	sel *Selectors // tunnel mode's traffic selectors (selectors.go), or nil
}

// NewSA makes an AES-GCM-16 SA from key material key || salt: 36 bytes for
// AES-256-GCM, 20 for AES-128-GCM (28 for AES-192-GCM). keymat is copied.
// replayWindow is the anti-replay window size for an inbound SA
// (0..MaxReplayWindow, 0 disables it); an outbound SA ignores it.
// Transform.NewSA makes SAs of the other transforms.
func NewSA(spi uint32, keymat []byte, replayWindow int) (*SA, error) {
	t := Transform{Cipher: CipherAESGCM16}
	switch len(keymat) {
	case 16 + saltLen, 24 + saltLen, 32 + saltLen:
		t.KeyBits = (len(keymat) - saltLen) * 8
	default:
		return nil, fmt.Errorf("esp: key material is %d bytes, want 20 (AES-128 key + salt) or 36 (AES-256 key + salt)", len(keymat))
	}
	return t.NewSA(spi, keymat, replayWindow)
}

// NewSA makes an SA of transform t. keymat is t.KeymatLen() bytes: the
// encryption key (with its 4-byte salt for the AEADs) followed by the
// integrity key (AES-CBC only), the order of IKEv2 KEYMAT (RFC 7296
// §2.17); it is copied. replayWindow is the anti-replay window size for an
// inbound SA (0..MaxReplayWindow, 0 disables it); an outbound SA ignores
// it. The same call builds either direction.
func (t Transform) NewSA(spi uint32, keymat []byte, replayWindow int) (*SA, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if len(keymat) != t.KeymatLen() {
		if t.AEAD() {
			return nil, fmt.Errorf("esp: %s key material is %d bytes, want %d (%d-byte key + 4-byte salt)",
				t.Name(), len(keymat), t.KeymatLen(), t.KeyBits/8)
		}
		return nil, fmt.Errorf("esp: %s key material is %d bytes, want %d (%d-byte AES key + %d-byte HMAC key)",
			t.Name(), len(keymat), t.KeymatLen(), t.EncKeyLen(), t.IntegKeyLen())
	}
	if spi == 0 {
		// RFC 4303 §2.1: zero is reserved for local use and never sent.
		return nil, errors.New("esp: SPI 0 is reserved")
	}
	sa := &SA{
		spi:     spi,
		tr:      t,
		name:    t.Description(),
		created: time.Now(),
		prefix:  t.PrefixLen(),
		icvLen:  t.ICVLen(),
		limit:   MaxSeq,
	}
	if t.ESN {
		sa.limit = MaxSeqESN
	}
	if err := sa.replay.init(replayWindow); err != nil {
		return nil, err
	}
	var err error
	if t.AEAD() {
		sa.crypt, err = newAEADCrypter(t, keymat)
	} else {
		sa.crypt, err = newCBCCrypter(t, keymat)
	}
	if err != nil {
		return nil, err
	}
	return sa, nil
}

// SPI is the SA's security parameters index.
func (sa *SA) SPI() uint32 { return sa.spi }

// Transform names the algorithm for status output, e.g.
// "esp-aes-256-gcm-16" (Transform.Description).
func (sa *SA) Transform() string { return sa.name }

// Algorithms is the SA's transform.
func (sa *SA) Algorithms() Transform { return sa.tr }

// PrefixLen is what Seal writes in front of the payload: SPI, sequence
// number and IV.
func (sa *SA) PrefixLen() int { return sa.prefix }

// String shows the SPI and transform, never the key.
func (sa *SA) String() string {
	return fmt.Sprintf("esp.SA{spi=0x%08x %s}", sa.spi, sa.name)
}

// GoString is String, so that %#v does not dump the key either.
func (sa *SA) GoString() string { return sa.String() }

// SeqUsed is how many sequence numbers Seal has used (0..MaxSeq, or
// MaxSeqESN), so that the control plane can rekey well before
// ErrSequenceExhausted.
func (sa *SA) SeqUsed() uint64 { return min(sa.seq.Load(), sa.limit) }

// SetSequence makes last the last sequence number sent, so that the next
// Seal sends last+1: a manually keyed SA resumed after a restart must not
// send numbers the peer's replay window has already seen (`ip xfrm state
// ... replay-oseq`). Call it before the first Seal.
func (sa *SA) SetSequence(last uint64) error {
	if last >= sa.limit {
		return fmt.Errorf("esp: sequence number %d leaves no room below %d", last, sa.limit)
	}
	sa.seq.Store(last)
	return nil
}

// Overhead is the exact number of bytes Seal adds to a payload of n bytes.
func (sa *SA) Overhead(n int) int { return sa.tr.Overhead(n) }

// Seal encrypts in place. buf[off:off+n] holds the payload; Seal writes the
// ESP header and IV into buf[off-sa.PrefixLen():off] and padding, trailer
// and ICV after the payload, and returns the packet
// buf[off-sa.PrefixLen():off+n+suffix]. It needs off >= sa.PrefixLen() and
// len(buf) >= off+n+sa.Overhead(n)-sa.PrefixLen() (off >= MaxPrefixLen and
// off+n+MaxSuffixLen always suffice); it writes nothing outside the packet
// it returns, in particular nothing beyond len(buf). Each call takes the
// next sequence number atomically. Without ESN, Seal refuses to send past
// MaxSeq (RFC 4303 §3.3.3); Stats counts the refusals.
func (sa *SA) Seal(buf []byte, off, n int, nextHeader byte) ([]byte, error) {
	if off < sa.prefix || n < 0 || off > len(buf) || n > len(buf)-off {
		return nil, ErrBufferTooSmall
	}
	pad := sa.tr.padLen(n)
	if len(buf)-off-n < pad+TrailerLen+sa.icvLen {
		return nil, ErrBufferTooSmall
	}
	seq := sa.seq.Add(1)
	if seq > sa.limit || seq == 0 {
		return nil, ErrSequenceExhausted
	}
	return sa.seal(buf, off, n, nextHeader, seq, nil, pad), nil
}

// seal builds the packet with the given sequence number, IV (nil: the
// transform's own) and pad length; the caller has checked the buffer.
// Tests use it to rebuild packets whose IV or padding a peer chose.
func (sa *SA) seal(buf []byte, off, n int, nextHeader byte, seq uint64, iv []byte, pad int) []byte {
	pkt := buf[off-sa.prefix:]
	h := Header(pkt)
	binary.BigEndian.PutUint32(h[spiOffset:], sa.spi)
	binary.BigEndian.PutUint32(h[seqOffset:], uint32(seq))
	if iv == nil {
		sa.crypt.writeIV(pkt[HeaderLen:sa.prefix], seq)
	} else {
		copy(pkt[HeaderLen:sa.prefix], iv)
	}
	t := buf[off+n : off+n+pad+TrailerLen]
	for i := range pad {
		t[i] = byte(i + 1) // RFC 4303 §2.4 default padding 1, 2, 3, ...
	}
	t[pad] = byte(pad)
	t[pad+1] = nextHeader

	plain := n + pad + TrailerLen
	sa.crypt.seal(pkt, plain, uint32(seq>>32))

	sa.packets.Add(1)
	sa.bytes.Add(uint64(n))
	return pkt[:sa.prefix+plain+sa.icvLen]
}

// Open authenticates and decrypts pkt (starting at the SPI) in place and
// returns the payload, a sub-slice of pkt, and the next header. It checks
// the replay window before decrypting and records the sequence number only
// once the ICV verified, so a forged or damaged packet never moves the
// window. Under ESN the high 32 bits of the sequence number are inferred
// from the window (RFC 4303 Appendix A2) and authenticated with the ICV.
// On DropAuth an AEAD's ciphertext in pkt has been overwritten; AES-CBC
// decrypts nothing before the ICV verified.
//
// A packet whose ICV verifies but whose padding is not 1, 2, 3, ... (or
// whose pad length does not fit) is dropped as DropMalformed; its sequence
// number stays recorded, since the peer did use it. Any IV and any amount of
// padding are accepted: Seal's choices are not a peer's obligation. An
// AES-CBC ciphertext that is not whole blocks is DropMalformed before any
// check.
func (sa *SA) Open(pkt []byte) (payload []byte, nextHeader byte, reason DropReason) {
	if len(pkt) < sa.tr.minLen() {
		return sa.drop(DropMalformed)
	}
	h := Header(pkt[:HeaderLen])
	if h.SPI() != sa.spi {
		return sa.drop(DropBadSPI)
	}
	if !sa.tr.AEAD() && (len(pkt)-sa.prefix-sa.icvLen)%aesBlockLen != 0 {
		return sa.drop(DropMalformed)
	}
	seq, ok := sa.replay.checkLow(h.Seq(), sa.tr.ESN)
	if !ok {
		return sa.drop(DropReplay)
	}
	plain, ok := sa.crypt.open(pkt, uint32(seq>>32))
	if !ok {
		return sa.drop(DropAuth)
	}
	if !sa.replay.Update(seq) {
		return sa.drop(DropReplay)
	}

	m := len(plain) - TrailerLen
	pad := int(plain[m])
	if pad > m {
		return sa.drop(DropMalformed)
	}
	for i, b := range plain[m-pad : m] {
		if b != byte(i+1) {
			return sa.drop(DropMalformed)
		}
	}
	sa.packets.Add(1)
	sa.bytes.Add(uint64(m - pad))
	return plain[:m-pad], plain[m+1], DropNone
}

func (sa *SA) drop(r DropReason) ([]byte, byte, DropReason) {
	sa.drops.add(r)
	return nil, 0, r
}

// SAStats is a snapshot of an SA's counters.
type SAStats struct {
	Packets uint64 // packets sealed or opened
	Bytes   uint64 // payload bytes sealed or opened
	// Sequence is, outbound, the last sequence number sent; inbound, the
	// highest accepted. The next one sent is Sequence+1 while Remaining > 0.
	Sequence  uint64
	Remaining uint64 // sequence numbers Seal can still use
	// SealRefused counts Seal calls refused because the sequence numbers
	// ran out (RFC 4303 §3.3.3: never cycle the counter).
	SealRefused  uint64
	ReplayWindow int // 0: anti-replay off (and for outbound SAs)
	Created      time.Time
	Drops        map[string]uint64 // by DropReason name; malformed, replay and auth always present
}

// Stats returns the SA's counters. It allocates (the map): call it for
// status, not per packet.
func (sa *SA) Stats() SAStats {
	used := sa.SeqUsed()
	s := SAStats{
		Packets:      sa.packets.Load(),
		Bytes:        sa.bytes.Load(),
		Sequence:     used,
		Remaining:    sa.limit - used,
		ReplayWindow: sa.replay.Size(),
		Created:      sa.created,
		Drops:        sa.drops.snapshot(DropMalformed, DropReplay, DropAuth),
	}
	if last := sa.seq.Load(); last > sa.limit {
		s.SealRefused = last - sa.limit
	}
	if used == 0 {
		s.Sequence = sa.replay.Highest()
	}
	return s
}
