package ike

import (
	"bytes"
	"math/big"
	"math/rand/v2"
	"testing"
)

// The proposals of the seeds' other peers, in strongSwan syntax, read as
// strongSwan reads them.
func TestParseNonAEADProposals(t *testing.T) {
	for _, c := range []struct {
		proto ProtocolID
		in    string
		suite string // of the first proposal, as SuiteOf names it
	}{
		// The appliance's "AES SHA 14" (IKEv2 and ESP with PFS 14).
		{ProtoIKE, "aes128-sha1-modp2048", "aes128-sha1-prfsha1-modp2048"},
		{ProtoESP, "aes128-sha1-modp2048", "aes128-sha1-modp2048"},
		// iked on Linux, which cannot key GCM children.
		{ProtoESP, "aes256-sha256-ecp384", "aes256-sha256-ecp384"},
		{ProtoIKE, "aes256-sha256-prfsha384-ecp384", "aes256-sha256-prfsha384-ecp384"},
		{ProtoIKE, "aes256-sha512-modp4096", "aes256-sha512-prfsha512-modp4096"},
		{ProtoIKE, "aes192-sha384-modp3072", "aes192-sha384-prfsha384-modp3072"},
		{ProtoIKE, "chacha20poly1305-prfsha256-x25519", "chacha20poly1305-prfsha256-curve25519"},
		{ProtoESP, "chacha20poly1305", "chacha20poly1305"},
		{ProtoESP, "aes256gcm16-esn", "aes256gcm16-esn"},
	} {
		ps, err := ParseProposals(c.proto, c.in)
		if err != nil {
			t.Errorf("%v %q: %v", c.proto, c.in, err)
			continue
		}
		s, err := SuiteOf(firstOfEach(ps[0]))
		if err != nil || s.String() != c.suite {
			t.Errorf("%v %q: suite %q (%v), want %q", c.proto, c.in, s, err, c.suite)
		}
	}
	for _, bad := range []string{"aes128", "aes128gcm16-sha1", "aes128-aes128gcm16-sha1", "aes128-md5"} {
		if _, err := ParseProposals(ProtoESP, bad); err == nil {
			t.Errorf("esp %q accepted", bad)
		}
	}
}

// firstOfEach keeps the first transform of each type: what a responder
// that prefers the initiator's order selects.
func firstOfEach(p Proposal) Proposal {
	seen := map[TransformType]bool{}
	q := p
	q.Transforms = nil
	for _, t := range p.Transforms {
		if !seen[t.Type] {
			seen[t.Type] = true
			q.Transforms = append(q.Transforms, t)
		}
	}
	return q
}

// Every IKE cipher seals what it opens; any flipped bit fails integrity
// before decryption; key lengths follow the suite.
func TestSKCiphersRoundTrip(t *testing.T) {
	r := rand.NewChaCha8([32]byte{9})
	for _, in := range []string{"aes128gcm16-prfsha256-ecp256", "aes256gcm16-prfsha384-ecp384", "chacha20poly1305-prfsha256-x25519",
		"aes128-sha1-modp2048", "aes256-sha256-ecp384", "aes192-sha384-ecp384", "aes256-sha512-ecp521"} {
		s, err := SuiteOf(MustParseProposals(ProtoIKE, in)[0])
		if err != nil {
			t.Fatal(in, err)
		}
		enc, integ := make(Secret, s.KeyLen()), make(Secret, s.IntegKeyLen())
		r.Read(enc)
		r.Read(integ)
		out, err := NewSK(s, enc, integ, r)
		if err != nil {
			t.Fatal(in, err)
		}
		back, _ := NewSK(s, enc, integ, r)
		for _, inner := range []Payloads{nil, {&Nonce{Data: bytes.Repeat([]byte{7}, 16+int(r.Uint64()%100))}}} {
			m := &Message{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL, Flags: FlagInitiator, MessageID: 3}
			raw, err := out.Seal(m, inner)
			if err != nil {
				t.Fatal(in, err)
			}
			dm, err := DecodeMessage(raw)
			if err != nil {
				t.Fatal(in, err)
			}
			got, err := back.Open(raw, dm)
			if err != nil || len(got) != len(inner) {
				t.Fatalf("%s: opened %d payloads, %v", in, len(got), err)
			}
			if len(inner) > 0 && !bytes.Equal(got[0].(*Nonce).Data, inner[0].(*Nonce).Data) {
				t.Errorf("%s: payload changed", in)
			}
			if !s.AEAD() && (len(raw)-HeaderLen-genericHeaderLen-16-s.ICVLen())%16 != 0 {
				t.Errorf("%s: ciphertext not a whole number of blocks", in)
			}
			for i := HeaderLen; i < len(raw); i += 7 {
				bad := bytes.Clone(raw)
				bad[i] ^= 0x10
				if dm, err := DecodeMessage(bad); err == nil {
					if _, err := back.Open(bad, dm); err == nil {
						t.Errorf("%s: byte %d flipped and still opened", in, i)
					}
				}
			}
		}
		if _, err := NewSK(s, enc[1:], integ, r); err == nil {
			t.Errorf("%s: short key accepted", in)
		}
	}
}

// RFC 3526's groups are safe primes of the stated sizes, and 2048 is the
// one the package always had.
func TestMODPGroups(t *testing.T) {
	for g, bits := range map[DHGroup]int{MODP2048: 2048, MODP3072: 3072, MODP4096: 4096} {
		m := modpGroups[g]
		q := new(big.Int).Rsh(m.pm1, 1)
		if m.p.BitLen() != bits || !m.p.ProbablyPrime(10) || !q.ProbablyPrime(10) || g.PublicLen() != bits/8 {
			t.Errorf("%v: %d bits, safe prime %v/%v", g, m.p.BitLen(), m.p.ProbablyPrime(10), q.ProbablyPrime(10))
		}
		r := rand.NewChaCha8([32]byte{byte(g)})
		a, _ := GenerateDH(g, r)
		b, _ := GenerateDH(g, r)
		sa, err1 := a.Shared(b.Public())
		sb, err2 := b.Shared(a.Public())
		if err1 != nil || err2 != nil || !bytes.Equal(sa, sb) || len(sa) != bits/8 {
			t.Errorf("%v: shared secrets differ (%v %v)", g, err1, err2)
		}
	}
}
