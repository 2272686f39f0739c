package demux

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gresec/gresec/ike"
)

type nopDP struct{}

func (nopDP) InstallChild(ike.ChildKeys) error   { return nil }
func (nopDP) RemoveChild(uint32) error           { return nil }
func (nopDP) ChildBytes(uint32) (in, out uint64) { return 0, 0 }
func (nopDP) SetOutbound(uint32) error           { return nil }

var _ ike.DataPlane = nopDP{}

// skRequest is a request with an SK payload of junk: what anyone can
// send for an IKE SA it names by SPIs.
func skRequest(spiI, spiR uint64, flags ike.Flags) []byte {
	b := ikeHeader(spiI, spiR, flags)
	ike.Header(b).SetExchange(ike.INFORMATIONAL)
	ike.Header(b).SetMessageID(1)
	ike.Header(b).SetNextPayload(ike.PayloadSK)
	body := make([]byte, 4+48)
	binary.BigEndian.PutUint16(body[2:], uint16(len(body)))
	b = append(b, body...)
	ike.Header(b).SetLength(uint32(len(b)))
	return b
}

// TestHintTakesNoSPI: the peer of one tunnel (or anyone spoofing its
// address) sends a request naming another tunnel's IKE SPI as the
// responder SPI, from the side that is not the original initiator. The
// first tunnel's real engine answers with an unprotected INVALID_IKE_SPI
// hint that echoes the SPIs; the port must not learn the other tunnel's
// SPI from it, or the other tunnel's IKE traffic goes to the wrong engine
// and its IKE SA dies (no DPD, no rekey).
func TestHintTakesNoSPI(t *testing.T) {
	p := NewIKEPort(nil)
	peerX := netip.MustParseAddr("198.18.0.2")
	peerZ := netip.MustParseAddrPort("198.18.0.3:500")
	const spiZ = 0x5a5a5a5a00000001

	var toZ atomic.Int64
	z := p.Join(peerZ.Addr(), func([]byte, netip.AddrPort) { toZ.Add(1) }, nil, &nullSender{}, nil)
	// Z answered its peer's IKE_SA_INIT with its SPI: learned.
	init := ikeHeader(0x77, spiZ, ike.FlagResponse)
	ike.Header(init).SetExchange(ike.IKE_SA_INIT)
	z.WriteToUDPAddrPort(init, peerZ)

	e := ike.New(ike.Config{Local: netip.MustParseAddr("198.18.0.1"), Remote: peerX, CookieThreshold: -1,
		LocalPSK: ike.Secret("0123456789abcdef0123"), RemotePSK: ike.Secret("0123456789abcdef0123"),
		Proposals:    ike.MustParseProposals(ike.ProtoIKE, "aes256gcm16-prfsha384-ecp384"),
		ESPProposals: ike.MustParseProposals(ike.ProtoESP, "aes256gcm16-ecp384")}, nopDP{}, nil)
	out := &nullSender{}
	x := p.Join(peerX, func(b []byte, from netip.AddrPort) { e.Offer(b, from) }, nil, out, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, x, nil) }()
	defer func() { cancel(); <-done }()

	// No I flag: it claims we initiated the SA, so the port looks up the
	// initiator SPI (unknown) and routes by address, to X.
	p.Dispatch(skRequest(0x99, spiZ, 0), netip.AddrPortFrom(peerX, 500))
	deadline := time.Now().Add(5 * time.Second)
	for e.Status().Counters.Drops["unknown_sa"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the engine did not take the forged request")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the hint goes out after the drop is counted
	if out.n == 0 {
		t.Fatal("the engine sent no INVALID_IKE_SPI hint: the test no longer exercises the echo")
	}
	// Z's peer's next request on its SA must still reach Z.
	p.Dispatch(skRequest(0x77, spiZ, ike.FlagInitiator), peerZ)
	if toZ.Load() != 1 {
		t.Fatalf("Z's IKE SA %#x now routes to another tunnel's engine", uint64(spiZ))
	}
}
