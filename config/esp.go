package config

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/ike"
)

// staticESP reads the [static] keys that depend on the transform: esp,
// esn, key_out/key_in, auth_key_out/auth_key_in and seq_out.
func (v *validator) staticESP(st *Static, name *string, esn *bool, keyOut, authOut, keyIn, authIn *string, seqOut *int64) {
	tr, fromKey := v.staticTransform(name, esn)
	st.KeyOut = v.staticKeys("static.key_out", "static.auth_key_out", keyOut, authOut, &tr, fromKey)
	outBits := tr.KeyBits
	st.KeyIn = v.staticKeys("static.key_in", "static.auth_key_in", keyIn, authIn, &tr, fromKey)
	if fromKey && st.KeyOut != nil && st.KeyIn != nil && tr.KeyBits != outBits {
		v.fail("static.key_in", "expected an AES-%d-GCM key like key_out (both SAs use one transform), got AES-%d (value not shown)", outBits, tr.KeyBits)
	}
	st.Transform = tr
	st.SeqOut = v.staticSeqOut(seqOut, tr)
}

// staticTransform reads [static] esp and esn: the transform of both
// static SAs. Without esp, the AES-GCM key size follows the key length,
// as before transforms could be chosen (the returned bool says so).
func (v *validator) staticTransform(name *string, esn *bool) (t esp.Transform, fromKey bool) {
	if name == nil {
		t, fromKey = esp.DefaultTransform, true
	} else {
		var err error
		if t, err = esp.ParseTransform(*name); err != nil {
			v.fail("static.esp", "expected an ESP transform like \"aes256gcm16\", \"aes128gcm16\", \"chacha20poly1305\", \"aes128-sha1\", \"aes256-sha256\", \"aes256-sha384\" or \"aes256-sha512\" (optionally with \"-esn\"), got %q", *name)
			return esp.DefaultTransform, false
		}
	}
	if esn != nil {
		if name != nil && t.ESN && !*esn {
			v.fail("static.esn", "esn = false contradicts static.esp = %q", *name)
		}
		t.ESN = t.ESN || *esn
	}
	return t, fromKey
}

// staticKeys reads one direction's key material for transform t:
// keyName holds the encryption key (with the 4-byte salt for an AEAD),
// authName the HMAC key (AES-CBC only). They are kept as one Key, the
// encryption key then the integrity key: the order esp.Transform.NewSA and
// IKEv2 KEYMAT use. When fromKey is set (no static.esp), an AES-GCM key
// of any AES size is accepted and *t follows its length.
func (v *validator) staticKeys(keyName, authName string, key, auth *string, t *esp.Transform, fromKey bool) Key {
	enc := v.hexKey(keyName, key, keyHint(*t, fromKey))
	if enc == nil {
		return nil
	}
	if fromKey {
		switch len(enc) {
		case 20, 28, 36:
			t.KeyBits = (len(enc) - 4) * 8
		}
	}
	if len(enc) != t.EncKeyLen() {
		v.fail(keyName, "expected %s, got %d bytes (value not shown)", keyHint(*t, fromKey), len(enc))
		return nil
	}
	if t.AEAD() {
		if auth != nil {
			v.fail(authName, "%s is an AEAD (its key_in/key_out carry key and salt); expected no %s", t.Name(), authName)
		}
		return Key(enc)
	}
	integ := v.hexKey(authName, auth, authHint(*t))
	if integ == nil {
		return nil
	}
	if len(integ) != t.IntegKeyLen() {
		v.fail(authName, "expected %s, got %d bytes (value not shown)", authHint(*t), len(integ))
		return nil
	}
	return Key(append(enc, integ...))
}

// hexKey decodes "0x" and hex digits.
func (v *validator) hexKey(name string, s *string, hint string) []byte {
	if s == nil {
		v.fail(name, "missing; expected \"0x\" and %s in hex", hint)
		return nil
	}
	h := strings.TrimPrefix(strings.TrimPrefix(*s, "0x"), "0X")
	b, err := hex.DecodeString(h)
	if err != nil {
		v.fail(name, "expected hex digits after \"0x\" (value not shown)")
		return nil
	}
	return b
}

func keyHint(t esp.Transform, fromKey bool) string {
	switch {
	case fromKey:
		return "36 bytes (AES-256 key + salt) or 20 bytes (AES-128 key + salt)"
	case t.AEAD():
		return fmt.Sprintf("%d bytes (%d-byte key + 4-byte salt) for %s", t.EncKeyLen(), t.KeyBits/8, t.Name())
	}
	return fmt.Sprintf("%d bytes (the AES-%d key of %s; the HMAC key goes in auth_key_in/auth_key_out)", t.EncKeyLen(), t.KeyBits, t.Name())
}

func authHint(t esp.Transform) string {
	return fmt.Sprintf("%d bytes (the HMAC key of %s)", t.IntegKeyLen(), t.Name())
}

// staticSeqOut reads [static] seq_out: the last sequence number sent
// before this start, like `ip xfrm state ... replay-oseq`.
func (v *validator) staticSeqOut(n *int64, t esp.Transform) uint64 {
	if n == nil {
		return 0
	}
	limit := int64(esp.MaxSeq)
	if t.ESN {
		limit = 1<<63 - 1
	}
	if *n < 0 || *n >= limit {
		v.fail("static.seq_out", "expected an integer 0..%d (the last sequence number sent), got %d", limit-1, *n)
		return 0
	}
	return uint64(*n)
}

// ESPTransform is the transform the MTU and overhead are computed for:
// the static SAs' one, else AES-GCM (the IKE-negotiated transform is not
// known before the exchange).
func (c *Config) ESPTransform() esp.Transform {
	if c.Keying == KeyingStatic && c.Static.Transform.Validate() == nil {
		return c.Static.Transform
	}
	if c.Keying.IKE() {
		// Any proposal may be chosen: size for the one with the most
		// overhead, so that the MTU fits whichever the peer picks.
		worst, found := esp.DefaultTransform, false
		for _, p := range c.IKE.ESPProposals {
			for _, s := range ike.Suites(p) {
				t, err := espTransform(s)
				if err == nil && (!found || t.MaxOverhead() > worst.MaxOverhead()) {
					worst, found = t, true
				}
			}
		}
		return worst
	}
	return esp.DefaultTransform
}

// ESPSupported reports whether the ESP data plane implements suite s: the
// engine negotiates nothing else.
func ESPSupported(s ike.Suite) bool {
	_, err := espTransform(s)
	return err == nil
}

func espTransform(s ike.Suite) (esp.Transform, error) {
	return esp.TransformFromIKE(s.Encr, s.KeyBits, s.Integ, s.ESN)
}
