package ike

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"testing"
	"time"
)

// IKE is the control plane: a handful of messages per hour per peer. These
// benchmarks exist to keep its costs visible (the DH operations dominate),
// not because any of it is on the per-packet path.

func benchVector(b *testing.B, k string) []byte {
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		b.Fatal(err)
	}
	var v struct{ Cases []map[string]any }
	if err := json.Unmarshal(raw, &v); err != nil {
		b.Fatal(err)
	}
	out, _ := hex.DecodeString(v.Cases[0][k].(string))
	return out
}

func BenchmarkDecodeInit(b *testing.B) {
	raw := benchVector(b, "init_req")
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := DecodeMessage(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeInit(b *testing.B) {
	m, _ := DecodeMessage(benchVector(b, "init_req"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSKSealOpen(b *testing.B) {
	c, _ := NewSKCipher(make(Secret, 36))
	inner := everyPayload()
	inner = inner[:len(inner)-1]
	m := &Message{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH}
	b.ReportAllocs()
	for b.Loop() {
		raw, err := c.Seal(m, inner)
		if err != nil {
			b.Fatal(err)
		}
		dm, _ := DecodeMessage(raw)
		if _, err := c.Open(raw, dm); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDH(b *testing.B) {
	for _, g := range []DHGroup{ECP256, ECP384, ECP521, Curve25519, MODP2048} {
		b.Run(g.String(), func(b *testing.B) {
			peer, _ := GenerateDH(g, nil)
			b.ReportAllocs()
			for b.Loop() {
				k, err := GenerateDH(g, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := k.Shared(peer.Public()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandshake is a whole IKE_SA_INIT + IKE_AUTH between two engines
// (the iked + IOS pair's suite), both sides' work.
func BenchmarkHandshake(b *testing.B) {
	t := &testing.T{}
	b.ReportAllocs()
	for b.Loop() {
		a, r := newPair(t, nil)
		a.e.initiate(t0)
		for i := 0; i < 4; i++ {
			from, to := a, r
			if len(a.conn.out) == 0 {
				from, to = r, a
			}
			raw := from.conn.out[0]
			from.conn.out = from.conn.out[1:]
			to.e.handle(raw, from.addr, t0.Add(time.Duration(i)))
		}
		if a.e.Status().State != "established" {
			b.Fatal("not established")
		}
	}
}

// BenchmarkCookie is what a responder under a flood spends per
// IKE_SA_INIT before keeping any state: make and check a cookie.
func BenchmarkCookie(b *testing.B) {
	e := New(Config{Rand: rand.Reader}, nil, nil)
	ni := make([]byte, 32)
	from := netip.MustParseAddr("198.18.0.1")
	now := time.Unix(0, 0)
	b.ReportAllocs()
	for b.Loop() {
		c := e.makeCookie(now, ni, from, 42)
		if !e.validCookie(now, c, ni, from, 42) {
			b.Fatal("own cookie refused")
		}
	}
}
