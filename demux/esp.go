package demux

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gresec/gresec/rawip"
)

// ESPPort is one socket carrying ESP for every tunnel on its local
// address. One goroutine (Run) reads it in batches and hands each run of
// consecutive packets for one tunnel to that tunnel's Sink; tunnels write
// through it (WriteBatch), serialised here because a Conn allows one
// writer at a time.
type ESPPort struct {
	conn  Conn
	spis  *SPITable
	peers atomic.Pointer[map[netip.Addr]Sink] // for packets whose SPI no tunnel owns
	pmu   sync.Mutex                          // serialises writers of peers

	wmu sync.Mutex // one writer at a time on conn

	msgs  []rawip.Message
	bases [][]byte
	sinks []Sink // the owner of each message of the batch being dispatched

	stats PortStats
}

// PortStats counts what the port dropped before any tunnel saw it.
type PortStats struct {
	// Malformed: shorter than an SPI. UnknownSPI: an SPI no tunnel owns
	// from an address no tunnel has as its peer.
	Malformed, UnknownSPI atomic.Uint64
	// Packets read, and read errors (the reader goes on after them).
	Packets, ReadErrors atomic.Uint64
}

// NewESPPort shares conn among tunnels, reading batch packets per call,
// each into a buffer of bufSize bytes placed headroom bytes into a larger
// one (the tunnels write headers there in place).
func NewESPPort(conn Conn, spis *SPITable, batch, headroom, bufSize int) *ESPPort {
	p := &ESPPort{conn: conn, spis: spis,
		msgs: make([]rawip.Message, batch), bases: make([][]byte, batch), sinks: make([]Sink, batch)}
	for i := range p.msgs {
		p.bases[i] = make([]byte, headroom+bufSize)
		p.msgs[i].Buf = p.bases[i][headroom:]
	}
	p.peers.Store(&map[netip.Addr]Sink{})
	return p
}

// Stats are the port's own drop counters.
func (p *ESPPort) Stats() *PortStats { return &p.stats }

// AddPeer routes packets from peer whose SPI no tunnel owns to s, so the
// tunnel counts them as its own bad SPIs and may tell the peer (RFC 7296
// §1.5 INVALID_SPI). It reports false if another tunnel has this peer.
func (p *ESPPort) AddPeer(peer netip.Addr, s Sink) bool {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	cur := *p.peers.Load()
	if o, ok := cur[peer]; ok {
		return o == s
	}
	next := make(map[netip.Addr]Sink, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[peer] = s
	p.peers.Store(&next)
	return true
}

// RemovePeer undoes AddPeer, if s has peer.
func (p *ESPPort) RemovePeer(peer netip.Addr, s Sink) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	cur := *p.peers.Load()
	if o, ok := cur[peer]; !ok || o != s {
		return
	}
	next := make(map[netip.Addr]Sink, len(cur))
	for k, v := range cur {
		if k != peer {
			next[k] = v
		}
	}
	p.peers.Store(&next)
}

// WriteBatch sends for one tunnel; concurrent callers take turns.
func (p *ESPPort) WriteBatch(msgs []rawip.Message) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.conn.WriteBatch(msgs)
}

// Close closes the socket; Run returns.
func (p *ESPPort) Close() error { return p.conn.Close() }

// Run reads and dispatches until the socket is closed.
func (p *ESPPort) Run() {
	for {
		n, err := p.conn.ReadBatch(p.msgs)
		if err != nil && n == 0 {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			p.stats.ReadErrors.Add(1)
			// Transient (ENOBUFS): do not spin on it.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.dispatch(n)
	}
}

// dispatch finds the owner of each of the first n messages and hands
// each run of consecutive messages with one owner to it, in order. It
// allocates nothing.
func (p *ESPPort) dispatch(n int) {
	p.stats.Packets.Add(uint64(n))
	spis := *p.spis.bySPI.Load()
	var peers map[netip.Addr]Sink
	for i := 0; i < n; i++ {
		m := &p.msgs[i]
		var s Sink
		if m.N < 4 {
			p.stats.Malformed.Add(1)
		} else {
			b := m.Buf[m.Off:]
			spi := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
			if s = spis[spi]; s == nil {
				if peers == nil {
					peers = *p.peers.Load()
				}
				if s = peers[m.Addr]; s == nil {
					p.stats.UnknownSPI.Add(1)
				}
			}
		}
		p.sinks[i] = s
	}
	for i := 0; i < n; {
		s := p.sinks[i]
		j := i + 1
		for j < n && p.sinks[j] == s {
			j++
		}
		if s != nil {
			s.Receive(p.msgs[i:j], p.bases[i:j])
		}
		i = j
	}
	clear(p.sinks[:n]) // hold no tunnel that may be gone
}
