package ike

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// Stateless cookies (RFC 7296 §2.6). Under a flood of IKE_SA_INIT requests
// a responder answers with only N(COOKIE) and keeps nothing; a real
// initiator repeats its request with the cookie, which the responder
// recomputes and checks before spending a DH computation or memory on it.
//
//	cookie = <version> | HMAC-SHA256(secret, Ni | IPi | SPIi)
//
// The secret changes every cookieSecretLife; the previous one is still
// accepted, so a cookie stays good for one to two periods.

const (
	cookieVersion    = 0
	cookieLen        = 1 + sha256.Size
	cookieSecretLife = 2 * time.Minute
	// pendingWindow is how far back answered IKE_SA_INIT requests count
	// towards CookieThreshold.
	pendingWindow = time.Minute
	// maxPending bounds the record of answered IKE_SA_INIT requests.
	maxPending = 256
)

// cookieJar holds the secrets: a new one for each cookieSecretLife epoch
// in which cookies are made or checked, so the current one has only been
// used in the current epoch and the previous one in the one before.
type cookieJar struct {
	mu        sync.Mutex // the engine and the socket reader (inbox.go) use it
	cur, prev [32]byte
	havePrev  bool
	epoch     int64 // of cur; 0: no secret yet
}

// pendingInit is an IKE_SA_INIT request we answered (and so kept state
// for) whose IKE SA has not authenticated yet.
type pendingInit struct {
	at   time.Time
	spiI uint64
}

func (e *Engine) cookieSecret(now time.Time) {
	j := &e.cookies
	epoch := now.UnixNano()/int64(cookieSecretLife) + 1
	if epoch == j.epoch {
		return
	}
	j.prev, j.havePrev = j.cur, j.epoch != 0 && epoch == j.epoch+1
	copy(j.cur[:], e.randBytes(32))
	j.epoch = epoch
}

func computeCookie(secret *[32]byte, ni []byte, from netip.Addr, spiI uint64) []byte {
	m := hmac.New(sha256.New, secret[:])
	m.Write(ni)
	m.Write(from.Unmap().AsSlice())
	m.Write(binary.BigEndian.AppendUint64(nil, spiI))
	return m.Sum([]byte{cookieVersion})
}

// makeCookie is the cookie we demand from (ni, from, spiI) now.
func (e *Engine) makeCookie(now time.Time, ni []byte, from netip.Addr, spiI uint64) []byte {
	e.cookies.mu.Lock()
	defer e.cookies.mu.Unlock()
	e.cookieSecret(now)
	return computeCookie(&e.cookies.cur, ni, from, spiI)
}

// validCookie checks a cookie against the current and previous secrets.
func (e *Engine) validCookie(now time.Time, got, ni []byte, from netip.Addr, spiI uint64) bool {
	if len(got) != cookieLen || got[0] != cookieVersion {
		return false
	}
	e.cookies.mu.Lock()
	defer e.cookies.mu.Unlock()
	e.cookieSecret(now)
	if hmac.Equal(got, computeCookie(&e.cookies.cur, ni, from, spiI)) {
		return true
	}
	return e.cookies.havePrev && hmac.Equal(got, computeCookie(&e.cookies.prev, ni, from, spiI))
}

// cookiesRequired reports whether so many IKE_SA_INIT requests were
// answered without leading to an IKE SA lately that new ones must bring a
// cookie.
func (e *Engine) cookiesRequired(now time.Time) bool {
	if e.cfg.CookieThreshold < 0 {
		return false
	}
	n := 0
	for _, p := range e.pending {
		if now.Sub(p.at) < pendingWindow {
			n++
		}
	}
	on := n >= e.cfg.CookieThreshold
	e.in.cookieMode.Store(on) // for Offer (inbox.go)
	return on
}

func (e *Engine) notePending(now time.Time, spiI uint64) {
	keep := e.pending[:0]
	for _, p := range e.pending {
		if now.Sub(p.at) < pendingWindow {
			keep = append(keep, p)
		}
	}
	e.pending = keep
	if len(e.pending) >= maxPending {
		e.pending = append(e.pending[:0], e.pending[1:]...)
	}
	e.pending = append(e.pending, pendingInit{at: now, spiI: spiI})
}

func (e *Engine) clearPending(spiI uint64) {
	for i, p := range e.pending {
		if p.spiI == spiI {
			e.pending = append(e.pending[:i], e.pending[i+1:]...)
			return
		}
	}
}
