package demux

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/gresec/gresec/ike"
)

// isakmpHeader is an IKEv1 (ISAKMP) header with these cookies and flags
// (IKEv1's: 0x01 encryption, 0x02 commit, 0x04 authentication only).
func isakmpHeader(iCookie, rCookie uint64, flags ike.Flags) []byte {
	h := make(ike.Header, ike.HeaderLen)
	h.SetSPIi(iCookie)
	h.SetSPIr(rCookie)
	h.SetNextPayload(ike.PayloadSK) // the byte IKEv2 reads as SK; ID (5) would do too
	h.SetVersion(0x10)
	h.SetFlags(flags)
	h.SetLength(ike.HeaderLen)
	return h
}

// TestIKEv1RoutesByAddress: IKEv1 datagrams whose cookies equal an IKEv2
// engine's learned SPIs go to the tunnel whose remote sent them (or
// nowhere), never by SPI; and what an IKEv1 engine sends teaches the port
// no SPI, whatever its cookies (the peer chose one of them).
func TestIKEv1RoutesByAddress(t *testing.T) {
	p := NewIKEPort(nil)
	var got []string
	offer := func(name string) Offer {
		return func(b []byte, from netip.AddrPort) { got = append(got, name) }
	}
	v2Peer := netip.MustParseAddrPort("198.18.0.2:500")
	v1Peer := netip.MustParseAddrPort("198.18.0.3:500")
	nat := &natSender{}
	v2 := p.Join(v2Peer.Addr(), offer("v2"), offer("v2-4500"), &nullSender{}, nat)
	v1 := p.Join(v1Peer.Addr(), offer("v1"), offer("v1-4500"), &nullSender{}, nat)
	// The IKEv2 engine is responder of SA 0x11/0xa1 and initiator of
	// 0xa2/...: both learned.
	v2.WriteToUDPAddrPort(ikeHeader(0x11, 0xa1, ike.FlagResponse), v2Peer)
	v2.WriteToUDPAddrPort(ikeHeader(0xa2, 0, ike.FlagInitiator), v2Peer)
	if n := len(*p.bySPI.Load()); n != 2 {
		t.Fatalf("%d SPIs learned from the IKEv2 engine, want 2", n)
	}
	// The IKEv1 engine sends messages whose cookies are new values and
	// values the IKEv2 engine holds (the peer picked its cookie so): none
	// is learned, and the IKEv2 SPIs still name the IKEv2 engine.
	for _, flags := range []ike.Flags{0, 0x01, 0x08, 0x20} {
		v1.WriteToUDPAddrPort(isakmpHeader(0xa2, 0xc1, flags), v1Peer)
		v1.WriteToUDPAddrPort(isakmpHeader(0xc2, 0xa1, flags), v1Peer)
		if err := v1.SendIKE(isakmpHeader(0xa2, 0xa1, flags), netip.AddrPortFrom(v1Peer.Addr(), 4500)); err != nil {
			t.Fatal(err)
		}
	}
	if spis := *p.bySPI.Load(); len(spis) != 2 || spis[0xa1] != v2 || spis[0xa2] != v2 {
		t.Fatalf("after the IKEv1 engine sent: SPI table %v, want only the IKEv2 engine's 0xa1 and 0xa2", spis)
	}
	// IKEv1 datagrams naming the IKEv2 engine's SPIs as cookies, read both
	// ways (flags 0: "we initiated", the I flag: "the peer did"), from the
	// IKEv1 peer: to the IKEv1 engine, on 500 and 4500.
	natted := netip.MustParseAddrPort("198.18.0.3:31000")
	p.Dispatch(isakmpHeader(0xa2, 0x5, 0), v1Peer)
	p.Dispatch(isakmpHeader(0x5, 0xa1, 0x08), v1Peer)
	p.DispatchNATT(isakmpHeader(0xa2, 0xa1, 0x01), natted)
	// From an address no tunnel has: unrouted, not the IKEv2 engine.
	stranger := netip.MustParseAddrPort("198.18.0.9:500")
	p.Dispatch(isakmpHeader(0xa2, 0x5, 0), stranger)
	p.Dispatch(isakmpHeader(0x5, 0xa1, 0x08), stranger)
	p.DispatchNATT(isakmpHeader(0xa2, 0xa1, 0x01), stranger)
	// The same SPIs in IKEv2 datagrams from the stranger still reach the
	// IKEv2 engine by SPI: the version check cost IKEv2 nothing.
	p.Dispatch(ikeHeader(0x11, 0xa1, ike.FlagInitiator), stranger)
	p.DispatchNATT(ikeHeader(0xa2, 0x6, ike.FlagResponse), stranger)
	want := []string{"v1", "v1", "v1-4500", "v2", "v2-4500"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dispatched %v, want %v", got, want)
	}
	if n := p.Unrouted.Load(); n != 3 {
		t.Fatalf("unrouted = %d, want 3", n)
	}
}

func TestIsIKEv2(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want bool
	}{
		{ikeHeader(1, 2, ike.FlagInitiator), true},
		{isakmpHeader(1, 2, 0), false},
		{ikeHeader(1, 2, 0)[:ike.HeaderLen-1], false},
		{nil, false},
	} {
		if got := isIKEv2(tc.b); got != tc.want {
			t.Errorf("isIKEv2(% x) = %v, want %v", tc.b, got, tc.want)
		}
	}
}
