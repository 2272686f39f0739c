package demux

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/gresec/gresec/ike"
)

// TestIKEDispatchDynamic: new IKE_SA_INITs from addresses no tunnel has go
// to the first dynamic engine; a dynamic engine bound to its peer's
// address gets that address's datagrams, gives it up to a tunnel
// configured with it, and moves with Bind; Claim takes an SPI over.
func TestIKEDispatchDynamic(t *testing.T) {
	p := NewIKEPort(nil)
	var got []string
	offer := func(name string) Offer {
		return func(b []byte, from netip.AddrPort) { got = append(got, name+":"+from.Addr().String()) }
	}
	out := &nullSender{}
	d1 := p.JoinAny("fqdn-a", "owner-a", offer("d1"), nil, out, nil)
	d2 := p.JoinAny("fqdn-b", "owner-b", offer("d2"), nil, out, nil)
	if d1 == nil || d2 == nil {
		t.Fatal("JoinAny refused")
	}
	if p.JoinAny("fqdn-a", nil, offer("x"), nil, out, nil) != nil {
		t.Fatal("a second dynamic engine took identity fqdn-a")
	}
	if o := p.AnyOwner("fqdn-b"); o != "owner-b" {
		t.Fatalf("AnyOwner(fqdn-b) = %v", o)
	}
	from := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	p.Dispatch(ikeHeader(0x11, 0, ike.FlagInitiator), from("198.18.0.20:500"))
	// d1 answered and handed the SA (our SPI 0xd1) over to d2.
	d2.Claim(0xd1)
	p.Dispatch(ikeHeader(0x11, 0xd1, ike.FlagInitiator), from("198.18.0.20:500"))
	// d2 authenticated its peer there: that address is d2's now, and
	// moves with it.
	d2.Bind(netip.MustParseAddr("198.18.0.20"))
	p.Dispatch(ikeHeader(0x12, 0, ike.FlagInitiator), from("198.18.0.20:500"))
	d2.Bind(netip.MustParseAddr("198.18.0.21"))
	p.Dispatch(ikeHeader(0x13, 0, ike.FlagInitiator), from("198.18.0.20:500"))
	p.Dispatch(ikeHeader(0x14, 0, ike.FlagInitiator), from("198.18.0.21:500"))
	// A tunnel configured with that address takes it from d2.
	fixed := p.Join(netip.MustParseAddr("198.18.0.21"), offer("fixed"), nil, out, nil)
	if fixed == nil {
		t.Fatal("Join refused an address a dynamic engine had found its peer at")
	}
	p.Dispatch(ikeHeader(0x15, 0, ike.FlagInitiator), from("198.18.0.21:500"))
	d2.Bind(netip.MustParseAddr("198.18.0.21")) // no-op: bound already, and fixed keeps it
	fixed.Leave()
	d1.Leave()
	p.Dispatch(ikeHeader(0x16, 0, ike.FlagInitiator), from("198.18.0.30:500"))
	// An SA nobody has, from nobody's address, is no dynamic peer's.
	p.Dispatch(ikeHeader(0x18, 0xee, ike.FlagInitiator), from("198.18.0.31:500"))
	want := []string{"d1:198.18.0.20", "d2:198.18.0.20", "d2:198.18.0.20", "d1:198.18.0.20", "d2:198.18.0.21",
		"fixed:198.18.0.21", "d2:198.18.0.30"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dispatched\n%v, want\n%v", got, want)
	}
	d2.Leave()
	got = nil
	p.Dispatch(ikeHeader(0x17, 0, ike.FlagInitiator), from("198.18.0.30:500"))
	p.Dispatch(ikeHeader(0x11, 0xd1, ike.FlagInitiator), from("198.18.0.20:500"))
	if len(got) != 0 || p.Unrouted.Load() != 3 {
		t.Fatalf("with no engine left: dispatched %v, %d unrouted", got, p.Unrouted.Load())
	}
}
