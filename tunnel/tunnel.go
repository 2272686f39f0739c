// Package tunnel wires one configured tunnel together: the TUN device, the
// raw IP socket to the peer, the GRE encapsulation and the ESP SAs, and the
// two packet pumps between them (send.go, receive.go).
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/demux"
	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/gre"
	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/ikev1"
	"github.com/gresec/gresec/rawip"
	"github.com/gresec/gresec/tun"
	"github.com/gresec/gresec/udpencap"
)

const (
	// sendHeadroom is where TUN reads put the inner packet, leaving room in
	// front for the headers written in place: ESP's (24 bytes with
	// AES-CBC's IV), tunnel mode's IP header (40 for IPv6) and GRE's (up
	// to 16).
	sendHeadroom = 80
	// sendTailroom is room after the inner packet for the ESP trailer.
	sendTailroom = esp.MaxSuffixLen
	// recvBufSize lets the TUN writer coalesce received TCP segments (GRO)
	// into one super-packet in the first segment's buffer.
	recvBufSize = 65536
	// tunWriteOffset is the headroom the TUN writer needs before a packet.
	tunWriteOffset = 16

	protoESP = 50
	protoGRE = 47
)

// Tunnel is one running GRE(-over-ESP) tunnel.
type Tunnel struct {
	cfg  *config.Config
	log  *zap.Logger
	dev  *tun.Device
	conn underlay
	// natt is UDP 4500 for IKE NAT traversal (nat.go; nil without);
	// path is where the send pump writes, rawPath the raw socket's.
	natt    natSocket
	path    atomic.Pointer[sendPath]
	rawPath sendPath
	espPort atomic.Uint32 // the peer's UDP port ESP came from last (nat.go)
	rxMu    sync.Mutex    // serialises the receive pumps (two when natt is open) and BindPeer
	sadb    *esp.DB       // nil for plain GRE
	greOpt  gre.Options
	// remote is the peer's underlay address; a dynamic peer's (remote =
	// "any") is set by BindPeer under peerMu, rxMu and sendMu, so the
	// pumps read it under theirs (dynamic.go).
	remote netip.Addr
	peerMu sync.Mutex
	mss4   uint16
	mss6   uint16
	// mssUDP4 and mssUDP6 clamp instead while IKE has floated ESP into
	// UDP, whose 8-byte header the MTU (the raw path's) does not leave.
	mssUDP4, mssUDP6 uint16
	greSeq           uint32 // owned by the send pump
	shape            shape  // the tunnel's shape, as the pumps use it (shape.go)

	// Underlay addresses as arrays, to recognise keepalives cheaply.
	local4, remote4   [4]byte
	local16, remote16 [16]byte
	ka                keepalive
	// sendMu serialises the socket's writers (the send pump, keepalives
	// sent and sent back) and their use of the outbound SA.
	sendMu  sync.Mutex
	kaMsg   [1]rawip.Message // the keepalive goroutine's, under sendMu
	reflect []rawip.Message  // the receive pump's keepalives to send back
	recvOut [][]byte         // the receive pump's inner packets for the TUN writer

	started time.Time
	stats   stats

	children children // CHILD_SAs installed by IKE
	// vtiOut: a VTI's outbound SAs in policy order (policy.go), set once
	// IKE installs one; nil: the single outbound SA of sadb sends.
	vtiOut     atomic.Pointer[[]*esp.SA]
	drainGrace time.Duration              // a removed CHILD_SA's inbound half still accepts packets this long
	ikeSock    *ikeSocket                 // UDP 500 of its own, for keying = "ikev2" and "ikev1" (nil: shared)
	shared     *shared                    // the daemon's sockets, when it shares them (shared.go)
	ike        atomic.Pointer[ike.Engine] // the running engine, nil before
	ikeMu      sync.Mutex                 // guards ikeCfg and ikeRestart
	ikeCfg     ikeSettings                // what the next engine starts with
	ikeRestart context.CancelFunc         // stops the running engine for a reload
	addrMu     sync.Mutex                 // serialises address changes by Reload
	addrs      []netip.Prefix             // the addresses on the interface
	staticMu   sync.Mutex                 // serialises static SA changes by Reload
	static     staticKeys                 // for Keys and Reload

	ikev1 atomic.Pointer[ikev1.Engine] // keying = "ikev1" (ikev1.go)
}

// New creates the TUN device and the raw socket and installs the static SAs.
// It needs CAP_NET_ADMIN and CAP_NET_RAW.
func New(cfg *config.Config, log *zap.Logger) (*Tunnel, error) { return NewShared(cfg, log, nil) }

// NewShared is New for one of many tunnels of a daemon: its ESP and IKE
// travel on socks, the daemon's sockets (nil: its own, as New).
func NewShared(cfg *config.Config, log *zap.Logger, socks *demux.Sockets) (*Tunnel, error) {
	t := &Tunnel{cfg: cfg, log: log, remote: cfg.Remote, started: time.Now(), drainGrace: DrainGrace,
		ikeCfg: ikeSettings{ike: cfg.IKE, replayWindow: cfg.ReplayWindow}}
	if cfg.MSSClamp {
		t.mss4, t.mss6 = uint16(cfg.MSS4()), uint16(cfg.MSS6())
		t.mssUDP4, t.mssUDP6 = uint16(cfg.MSSInUDP4()), uint16(cfg.MSSInUDP6())
	}
	t.setUnderlay()
	t.setShape()
	t.ka.init(cfg.Keepalive, cfg.KeepaliveRetries)
	if cfg.GREKey != nil {
		t.greOpt = gre.Options{Key: *cfg.GREKey, UseKey: true}
	}

	proto := protoGRE
	if cfg.Keying != config.KeyingNone {
		proto = protoESP
		t.sadb = &esp.DB{}
	}
	if cfg.Keying == config.KeyingStatic {
		in, out, err := newStaticSAs(cfg.Path, cfg.Static, cfg.ReplayWindow)
		if err != nil {
			return nil, err
		}
		t.sadb.AddInbound(in)
		t.sadb.SetOutbound(out)
		t.static = newStaticKeys(cfg)
	}

	if socks != nil && sharesESP(cfg) {
		if err := t.joinSockets(socks); err != nil {
			return nil, err
		}
	} else if conn, err := listenUnderlay(cfg, proto); err != nil {
		return nil, err
	} else {
		t.conn = conn
	}
	t.rawPath = sendPath{conn: t.conn}
	t.path.Store(&t.rawPath)
	// An IKE tunnel of a daemon that shares its sockets took the daemon's
	// UDP 500 and 4500 in joinSockets.
	if cfg.Keying.IKE() && t.shared == nil {
		// Bound now, with the other privileged sockets, so the daemon can
		// drop its privileges before any peer is heard.
		var err error
		if t.ikeSock, err = listenIKE(cfg.Local); err != nil {
			t.conn.Close()
			return nil, err
		}
		if err := t.listenNATT(cfg); err != nil {
			t.Close()
			return nil, err
		}
	}
	t.reflect = make([]rawip.Message, 0, batchSize)
	t.recvOut = make([][]byte, 0, batchSize)

	dev, err := tun.Create(cfg.Interface, cfg.MTU)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("TUN device %s: %w", cfg.Interface, err)
	}
	t.dev = dev
	if err := dev.SetAddresses(cfg.Addresses); err != nil {
		t.Close()
		return nil, fmt.Errorf("addresses on %s: %w", cfg.Interface, err)
	}
	t.addrs = cfg.Addresses
	if err := dev.Up(); err != nil {
		t.Close()
		return nil, fmt.Errorf("bringing %s up: %w", cfg.Interface, err)
	}
	if t.shared != nil {
		if err := t.attach(); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// underlay is the socket the tunnel's packets travel on: a raw IP socket
// (ESP or GRE) or, for ESP in UDP, a UDP socket (package udpencap).
type underlay interface {
	ReadBatch([]rawip.Message) (int, error)
	WriteBatch([]rawip.Message) (int, error)
	Close() error
}

// listenUnderlay opens the tunnel's socket: UDP on cfg.UDPPort (to the
// peer's same port) when ESP travels in UDP, else raw IP protocol proto.
func listenUnderlay(cfg *config.Config, proto int) (underlay, error) {
	if cfg.ESPInUDP() {
		port := uint16(cfg.UDPPort)
		conn, err := udpencap.Listen(cfg.Local, port, port, batchSize)
		if err != nil {
			return nil, fmt.Errorf("ESP-in-UDP socket on %s: %w", netip.AddrPortFrom(cfg.Local, port), err)
		}
		return conn, nil
	}
	conn, err := rawip.Listen(proto, cfg.Local, batchSize)
	if err != nil {
		return nil, fmt.Errorf("raw IP socket (protocol %d) on %s: %w", proto, cfg.Local, err)
	}
	return conn, nil
}

// batchSize is how many packets one raw-socket system call moves.
const batchSize = 128

// Run moves packets until ctx is cancelled or a device fails.
func (t *Tunnel) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); errc <- t.sendLoop() }()
	go func() { defer wg.Done(); errc <- t.receiveLoop(ctx) }()
	go func() { defer wg.Done(); t.keepaliveLoop(ctx) }()
	if t.natt != nil && (t.shared == nil || t.shared.natt == nil) { // a socket of its own
		wg.Add(1)
		go func() { defer wg.Done(); errc <- t.receiveFrom(t.natt) }()
	}
	if t.cfg.Keying == config.KeyingIKEv1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := t.runIKEv1(ctx); err != nil && ctx.Err() == nil {
				errc <- err
			}
		}()
	}
	if t.cfg.Keying == config.KeyingIKEv2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := t.runIKE(ctx); err != nil && ctx.Err() == nil {
				errc <- err
			}
		}()
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// Cancelling stops IKE; closing the devices unblocks the pumps.
	cancel()
	t.Close()
	wg.Wait()
	if t.sadb != nil {
		// The engine's last deletes left inbound SAs draining: nothing
		// arrives any more, so their timers have nothing to wait for.
		t.sadb.FlushDraining()
	}
	return err
}

// setUnderlay keeps the underlay addresses in the forms keepalive
// recognition compares.
func (t *Tunnel) setUnderlay() {
	if !t.remote.IsValid() { // a dynamic peer, not known yet
		t.remote4, t.remote16 = [4]byte{}, [16]byte{}
		t.local4, t.local16 = [4]byte{}, [16]byte{}
		if t.cfg.Local.Is4() {
			t.local4 = t.cfg.Local.As4()
		} else {
			t.local16 = t.cfg.Local.As16()
		}
		return
	}
	if t.cfg.Local.Is4() {
		t.local4, t.remote4 = t.cfg.Local.As4(), t.remote.As4()
	} else {
		t.local16, t.remote16 = t.cfg.Local.As16(), t.remote.As16()
	}
}

// Close removes the TUN device and closes the socket; safe to call twice.
func (t *Tunnel) Close() {
	if t.shared != nil {
		t.detach()
	}
	if t.dev != nil {
		t.dev.Close()
	}
	if t.conn != nil {
		t.conn.Close()
	}
	if t.ikeSock != nil {
		t.ikeSock.close()
	}
	if t.natt != nil {
		t.natt.Close()
	}
}

// SADB is the tunnel's SA database, for the key manager; nil for plain GRE.
func (t *Tunnel) SADB() *esp.DB { return t.sadb }

// isClosed tells a device closed under a pump from a real failure.
func isClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed)
}
