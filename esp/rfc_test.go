package esp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// hx decodes hex as the RFCs print it, with spaces and line breaks.
func hx(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRFC3602 uses the ESP packets of RFC 3602 §4 (cases 5, transport
// mode, and 7, tunnel mode). The RFC's SAs have no integrity algorithm;
// ours always do, so the test appends an HMAC-SHA-256-128 ICV computed
// here: Open must decrypt the RFC's ciphertext to the RFC's plaintext, and
// Seal with the RFC's IV must write the RFC's ciphertext.
func TestRFC3602(t *testing.T) {
	cases := []struct {
		name    string
		key     string
		spi     uint32
		seq     uint64
		esp     string // SPI through the last ciphertext block
		payload string
		pad     int
		nh      byte
	}{
		{
			name: "case 5, ping in transport mode",
			key:  "90d382b4 10eeba7a d938c46c ec1a82bf", spi: 0x4321, seq: 1,
			esp: `00004321 00000001
				e96e8c08 ab465763 fd098d45 dd3ff893
				f663c25d 325c18c6 a9453e19 4e120849 a4870b66 cc6b9965 330013b4 898dc856
				a4699e52 3a55db08 0b59ec3a 8e4b7e52 775b07d1 db34ed9c 538ab50c 551b874a
				a269add0 47ad2d59 13ac19b7 cfbad4a6`,
			payload: `08000ebd a70a0000 8e9c083d b95b0700 08090a0b 0c0d0e0f 10111213 14151617
				18191a1b 1c1d1e1f 20212223 24252627 28292a2b 2c2d2e2f 30313233 34353637`,
			pad: 14, nh: 1,
		},
		{
			name: "case 7, ping in tunnel mode",
			key:  "01234567 89abcdef 01234567 89abcdef", spi: 0x8765, seq: 2,
			esp: `00008765 00000002
				f4e76524 4f6407ad f13dc138 0f673f37
				773b5241 a4c44922 5e4f3ce5 ed611b0c 237ca96c f74a9301 3c1b0ea1 a0cf70f8
				e4ecaec7 8ac53aad 7a0f022b 859243c6 47752e94 a859352b 8a4d4d2d ecd136e5
				c177f132 ad3fbfb2 201ac990 4c74ee0a 109e0ca1 e4dfe9d5 a100b842 f1c22f0d`,
			payload: `45000054 09040000 4001f988 c0a87b03 c0a87bc8 08009f76 a90a0100 b49c083d
				02a20400 08090a0b 0c0d0e0f 10111213 14151617 18191a1b 1c1d1e1f 20212223
				24252627 28292a2b 2c2d2e2f 30313233 34353637`,
			pad: 10, nh: 4,
		},
	}
	tr := Transform{Cipher: CipherAESCBC, KeyBits: 128, Integ: IntegHMACSHA256_128}
	integKey := bytes.Repeat([]byte{0x42}, 32)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			keymat := append(hx(t, c.key), integKey...)
			esp, payload := hx(t, c.esp), hx(t, c.payload)
			mac := hmac.New(sha256.New, integKey)
			mac.Write(esp)
			pkt := append(bytes.Clone(esp), mac.Sum(nil)[:16]...)

			in, err := tr.NewSA(c.spi, keymat, DefaultReplayWindow)
			if err != nil {
				t.Fatal(err)
			}
			got, nh, r := in.Open(bytes.Clone(pkt))
			if r != DropNone || nh != c.nh || !bytes.Equal(got, payload) {
				t.Fatalf("Open = %x, %d, %v; want the RFC's plaintext, next header %d", got, nh, r, c.nh)
			}

			out, err := tr.NewSA(c.spi, keymat, 0)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, MaxPrefixLen+len(payload)+MaxSuffixLen)
			copy(buf[MaxPrefixLen:], payload)
			sealed := out.seal(buf, MaxPrefixLen, len(payload), c.nh, c.seq, esp[HeaderLen:MaxPrefixLen], c.pad)
			if !bytes.Equal(sealed, pkt) {
				t.Fatalf("seal with the RFC's IV\n got %x\nwant %x", sealed, pkt)
			}
			if c.pad != tr.padLen(len(payload)) {
				t.Errorf("RFC pads %d bytes, Seal would pad %d", c.pad, tr.padLen(len(payload)))
			}
		})
	}
}

// TestRFC7634 is the ESP example of RFC 7634 Appendix A: ChaCha20-Poly1305
// in tunnel mode, SPI 0x01020304, sequence number 5.
func TestRFC7634(t *testing.T) {
	keymat := hx(t, `80 81 82 83 84 85 86 87 88 89 8a 8b 8c 8d 8e 8f
		90 91 92 93 94 95 96 97 98 99 9a 9b 9c 9d 9e 9f a0 a1 a2 a3`)
	payload := hx(t, `45 00 00 54 a6 f2 00 00 40 01 e7 78 c6 33 64 05
		c0 00 02 05 08 00 5b 7a 3a 08 00 00 55 3b ec 10
		00 07 36 27 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13
		14 15 16 17 18 19 1a 1b 1c 1d 1e 1f 20 21 22 23
		24 25 26 27 28 29 2a 2b 2c 2d 2e 2f 30 31 32 33
		34 35 36 37`)
	pkt := hx(t, `01 02 03 04 00 00 00 05 10 11 12 13 14 15 16 17
		24 03 94 28 b9 7f 41 7e 3c 13 75 3a 4f 05 08 7b
		67 c3 52 e6 a7 fa b1 b9 82 d4 66 ef 40 7a e5 c6
		14 ee 80 99 d5 28 44 eb 61 aa 95 df ab 4c 02 f7
		2a a7 1e 7c 4c 4f 64 c9 be fe 2f ac c6 38 e8 f3
		cb ec 16 3f ac 46 9b 50 27 73 f6 fb 94 e6 64 da
		91 65 b8 28 29 f6 41 e0
		76 aa a8 26 6b 7f b0 f7 b1 1b 36 99 07 e1 ad 43`)
	tr := mustTransform(t, "chacha20poly1305")
	in, err := tr.NewSA(0x01020304, keymat, DefaultReplayWindow)
	if err != nil {
		t.Fatal(err)
	}
	got, nh, r := in.Open(bytes.Clone(pkt))
	if r != DropNone || nh != 4 || !bytes.Equal(got, payload) {
		t.Fatalf("Open = %x, %d, %v", got, nh, r)
	}
	out, _ := tr.NewSA(0x01020304, keymat, 0)
	buf := make([]byte, PrefixLen+len(payload)+MaxSuffixLen)
	copy(buf[PrefixLen:], payload)
	if sealed := out.seal(buf, PrefixLen, len(payload), 4, 5, pkt[8:16], 2); !bytes.Equal(sealed, pkt) {
		t.Fatalf("seal\n got %x\nwant %x", sealed, pkt)
	}
}

// TestHMACTruncation checks each integrity algorithm's truncated ICV on
// the first test case of RFC 4868 §2.7.2.1-3 (AUTH256-1, AUTH384-1,
// AUTH512-1: key 0x0b repeated to the hash length, data "Hi There") and
// of RFC 2202 §3 for HMAC-SHA-1 (key length 20), truncated as RFC 2404
// and RFC 4868 say.
func TestHMACTruncation(t *testing.T) {
	for name, want := range map[string]string{
		"aes128-sha1":   "b617318655057264e28bc0b6",
		"aes128-sha256": "198a607eb44bfbc69903a0f1cf2bbdc5",
		"aes128-sha384": "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
		"aes128-sha512": "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
	} {
		tr := mustTransform(t, name)
		keymat := append(make([]byte, 16), bytes.Repeat([]byte{0x0b}, tr.IntegKeyLen())...)
		sa := mustTSA(t, tr, keymat, 0)
		c := sa.crypt.(*cbcCrypter)
		w := c.work.Get().(*cbcWork)
		if got := hex.EncodeToString(c.icv(w, []byte("Hi There"), 0)); got != want {
			t.Errorf("%s: ICV %s, want %s", name, got, want)
		}
		c.work.Put(w)
	}
}
