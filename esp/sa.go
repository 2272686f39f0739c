package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
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

// SA is one direction of an ESP security association: one SPI, one AES-GCM
// key. Seal and Open are safe for concurrent use and do not allocate.
type SA struct {
	spi       uint32
	transform string
	created   time.Time
	// The key schedule and salt sit behind a pointer so that printing an SA
	// value with fmt shows an address, never key material.
	key *gcmKey

	seq    atomic.Uint64 // last sequence number Seal took
	replay Window

	packets atomic.Uint64
	bytes   atomic.Uint64
	drops   dropCounters
}

type gcmKey struct {
	aead cipher.AEAD
	salt [saltLen]byte
}

// Format redacts under every verb: a key must not reach a log through %v
// (or %d, %x, ...) of its holder.
func (k *gcmKey) Format(f fmt.State, verb rune) { io.WriteString(f, "[redacted]") }

// NewSA makes an SA from key material key || salt: 36 bytes for AES-256-GCM,
// 20 for AES-128-GCM (ICV 16 bytes). keymat is copied. replayWindow is the
// anti-replay window size for an inbound SA (0..MaxReplayWindow, 0 disables
// it); an outbound SA ignores it.
func NewSA(spi uint32, keymat []byte, replayWindow int) (*SA, error) {
	var bits int
	switch len(keymat) {
	case 16 + saltLen:
		bits = 128
	case 32 + saltLen:
		bits = 256
	default:
		return nil, fmt.Errorf("esp: key material is %d bytes, want 20 (AES-128 key + salt) or 36 (AES-256 key + salt)", len(keymat))
	}
	if spi == 0 {
		// RFC 4303 §2.1: zero is reserved for local use and never sent.
		return nil, errors.New("esp: SPI 0 is reserved")
	}
	sa := &SA{
		spi:       spi,
		transform: fmt.Sprintf("esp-aes-%d-gcm-16", bits),
		created:   time.Now(),
		key:       new(gcmKey),
	}
	if err := sa.replay.init(replayWindow); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(keymat[:len(keymat)-saltLen])
	if err != nil {
		return nil, errors.New("esp: AES key rejected") // not reachable with these lengths; never echo the key
	}
	if sa.key.aead, err = cipher.NewGCM(block); err != nil {
		return nil, errors.New("esp: AES-GCM unavailable")
	}
	copy(sa.key.salt[:], keymat[len(keymat)-saltLen:])
	return sa, nil
}

// SPI is the SA's security parameters index.
func (sa *SA) SPI() uint32 { return sa.spi }

// Transform names the algorithm for status output, e.g. "esp-aes-256-gcm-16".
func (sa *SA) Transform() string { return sa.transform }

// String shows the SPI and transform, never the key.
func (sa *SA) String() string {
	return fmt.Sprintf("esp.SA{spi=0x%08x %s}", sa.spi, sa.transform)
}

// GoString is String, so that %#v does not dump the key either.
func (sa *SA) GoString() string { return sa.String() }

// SeqUsed is how many sequence numbers Seal has used (0..MaxSeq), so that
// the control plane can rekey well before ErrSequenceExhausted.
func (sa *SA) SeqUsed() uint64 { return min(sa.seq.Load(), MaxSeq) }

// nonces are scratch for the 12-byte GCM nonce. A nonce on the stack would
// escape to the heap (it is passed through the cipher.AEAD interface), and
// no room in the packet is free for it: the 16 bytes in front of the
// ciphertext must hold SPI || seq (the AAD) and the IV at the same time.
var nonces = sync.Pool{New: func() any { return new([nonceLen]byte) }}

// Seal encrypts in place. buf[off:off+n] holds the payload; Seal writes the
// ESP header and IV into buf[off-PrefixLen:off] and padding, trailer and ICV
// after the payload, and returns the packet buf[off-PrefixLen:off+n+suffix].
// It needs off >= PrefixLen and len(buf) >= off+n+Overhead(n)-PrefixLen
// (off+n+MaxSuffixLen always suffices); it writes nothing outside the packet
// it returns, in particular nothing beyond len(buf). Each call takes the next
// sequence number atomically; IV = the 64-bit sequence counter, unique for
// the key (RFC 4106 §3.1).
func (sa *SA) Seal(buf []byte, off, n int, nextHeader byte) ([]byte, error) {
	if off < PrefixLen || n < 0 || off > len(buf) || n > len(buf)-off {
		return nil, ErrBufferTooSmall
	}
	pad := padLen(n)
	if len(buf)-off-n < pad+TrailerLen+ICVLen {
		return nil, ErrBufferTooSmall
	}
	seq := sa.seq.Add(1)
	if seq > MaxSeq {
		return nil, ErrSequenceExhausted
	}
	return sa.seal(buf, off, n, nextHeader, seq, seq, pad), nil
}

// seal builds the packet with the given sequence number, IV and pad length;
// the caller has checked the buffer. Tests use it to rebuild packets whose
// IV or padding a peer chose.
func (sa *SA) seal(buf []byte, off, n int, nextHeader byte, seq, iv uint64, pad int) []byte {
	h := Header(buf[off-PrefixLen : off])
	h.put(sa.spi, uint32(seq), iv)
	plainEnd := off + n + pad + TrailerLen
	t := buf[off+n : plainEnd]
	for i := range pad {
		t[i] = byte(i + 1) // RFC 4303 §2.4 default padding 1, 2, 3, ...
	}
	t[pad] = byte(pad)
	t[pad+1] = nextHeader

	nonce := nonces.Get().(*[nonceLen]byte)
	copy(nonce[:saltLen], sa.key.salt[:])
	binary.BigEndian.PutUint64(nonce[saltLen:], iv)
	sa.key.aead.Seal(buf[off:off:plainEnd+ICVLen], nonce[:], buf[off:plainEnd], h[:HeaderLen])
	nonces.Put(nonce)

	sa.packets.Add(1)
	sa.bytes.Add(uint64(n))
	return buf[off-PrefixLen : plainEnd+ICVLen]
}

// Open authenticates and decrypts pkt (starting at the SPI) in place and
// returns the payload, a sub-slice of pkt, and the next header. It checks
// the replay window before decrypting and records the sequence number only
// once the ICV verified, so a forged or damaged packet never moves the
// window. On DropAuth the ciphertext in pkt has been overwritten.
//
// A packet whose ICV verifies but whose padding is not 1, 2, 3, ... (or
// whose pad length does not fit) is dropped as DropMalformed; its sequence
// number stays recorded, since the peer did use it. Any IV and any amount of
// padding are accepted: Seal's choices are not a peer's obligation.
func (sa *SA) Open(pkt []byte) (payload []byte, nextHeader byte, reason DropReason) {
	if len(pkt) < MinLen {
		return sa.drop(DropMalformed)
	}
	h := Header(pkt[:PrefixLen])
	if h.SPI() != sa.spi {
		return sa.drop(DropBadSPI)
	}
	seq := uint64(h.Seq())
	if !sa.replay.Check(seq) {
		return sa.drop(DropReplay)
	}

	nonce := nonces.Get().(*[nonceLen]byte)
	copy(nonce[:saltLen], sa.key.salt[:])
	copy(nonce[saltLen:], h[ivOffset:PrefixLen])
	plain, err := sa.key.aead.Open(pkt[PrefixLen:PrefixLen], nonce[:], pkt[PrefixLen:], h[:HeaderLen])
	nonces.Put(nonce)
	if err != nil {
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
	Sequence     uint64
	Remaining    uint64 // sequence numbers Seal can still use
	ReplayWindow int    // 0: anti-replay off (and for outbound SAs)
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
		Remaining:    MaxSeq - used,
		ReplayWindow: sa.replay.Size(),
		Created:      sa.created,
		Drops:        sa.drops.snapshot(DropMalformed, DropReplay, DropAuth),
	}
	if used == 0 {
		s.Sequence = sa.replay.Highest()
	}
	return s
}
