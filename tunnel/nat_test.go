package tunnel

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/rawip"
	"github.com/gresec/gresec/udpencap"
)

// recorder is an underlay that keeps what is written to it.
type recorder struct{ got []rawip.Message }

func (r *recorder) ReadBatch([]rawip.Message) (int, error) { select {} }
func (r *recorder) WriteBatch(m []rawip.Message) (int, error) {
	r.got = append(r.got[:0], m...)
	return len(m), nil
}
func (r *recorder) Close() error { return nil }

// natPipe is ikePipe's a with a raw recorder and a real UDP socket (on
// the loopback, any port) standing for UDP 4500.
func natPipe(t *testing.T) (*Tunnel, *recorder) {
	a, _ := ikePipe(t, 0)
	raw := &recorder{}
	a.conn, a.rawPath = raw, sendPath{conn: raw}
	a.path.Store(&a.rawPath)
	c, err := udpencap.Listen(netip.MustParseAddr("127.0.0.1"), 0, 4500, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a.natt = c
	return a, raw
}

// TestNATPathFollowsOutboundSA: the send path is the outbound CHILD_SA's:
// raw ESP, or ESP in UDP to the peer's port (its NAT mapping), which
// MoveESPPeer changes; SetOutbound back to a raw child goes back to raw.
func TestNATPathFollowsOutboundSA(t *testing.T) {
	a, raw := natPipe(t)
	mapping := netip.MustParseAddrPort("198.18.0.2:40001")
	key := bytes.Repeat([]byte{1}, 36)
	if err := a.InstallChild(ike.ChildKeys{Suite: gcm256, SPIIn: 0x2001, SPIOut: 0x3001, KeyIn: key, KeyOut: key}); err != nil {
		t.Fatal(err)
	}
	if p := a.path.Load(); p != &a.rawPath {
		t.Fatalf("raw child: path %+v", p)
	}
	if err := a.InstallChild(ike.ChildKeys{Suite: gcm256, SPIIn: 0x2002, SPIOut: 0x3002, KeyIn: key, KeyOut: key, UDPPeer: mapping}); err != nil {
		t.Fatal(err)
	}
	if p := a.path.Load(); p.conn != underlay(a.natt) || p.port != 40001 {
		t.Fatalf("UDP child: path %+v", p)
	}
	a.MoveESPPeer(netip.MustParseAddrPort("198.18.0.2:40002"))
	if p := a.path.Load(); p.conn != underlay(a.natt) || p.port != 40002 || a.children.udp[0x2002].Port() != 40002 || a.children.udp[0x2001].IsValid() {
		t.Fatalf("after the move: path %+v, children %v", p, a.children.udp)
	}
	if err := a.SetOutbound(0x2001); err != nil {
		t.Fatal(err)
	}
	msgs := []rawip.Message{{Addr: a.remote}, {Addr: a.remote}}
	if n, err := a.writeBatch(msgs); n != 2 || err != nil || len(raw.got) != 2 || raw.got[0].Port != 0 {
		t.Fatalf("raw child again: wrote %d (%v) %+v", n, err, raw.got)
	}
	if allocs := testing.AllocsPerRun(100, func() { a.writeBatch(msgs) }); allocs != 0 {
		t.Errorf("raw path: %v allocations per batch", allocs)
	}
}

// TestNATNoteESPFrom: authentic ESP in UDP from a new port goes to the
// engine once per port; raw ESP (Port 0) never reaches it.
func TestNATNoteESPFrom(t *testing.T) {
	a, _ := natPipe(t)
	m := rawip.Message{Addr: a.remote, Port: 40001}
	a.noteESPFrom(&m) // no engine: nothing to tell, no panic
	if a.espPort.Load() != 40001 {
		t.Errorf("port %d", a.espPort.Load())
	}
	if allocs := testing.AllocsPerRun(100, func() { a.noteESPFrom(&m) }); allocs != 0 {
		t.Errorf("%v allocations per packet", allocs)
	}
}

// TestNATClampFollowsPath: while ESP floats into UDP the MSS clamp is the
// smaller one that leaves room for the UDP header; back on raw ESP it is
// the MTU's again.
func TestNATClampFollowsPath(t *testing.T) {
	a, _ := natPipe(t)
	a.mss4, a.mss6, a.mssUDP4, a.mssUDP6 = 1402, 1382, 1394, 1374
	key := bytes.Repeat([]byte{1}, 36)
	if m4, m6 := a.clampMSS(); m4 != 1402 || m6 != 1382 {
		t.Fatalf("raw path: clamp %d/%d", m4, m6)
	}
	if err := a.InstallChild(ike.ChildKeys{Suite: gcm256, SPIIn: 0x2002, SPIOut: 0x3002, KeyIn: key, KeyOut: key,
		UDPPeer: netip.MustParseAddrPort("198.18.0.2:40001")}); err != nil {
		t.Fatal(err)
	}
	if m4, m6 := a.clampMSS(); m4 != 1394 || m6 != 1374 {
		t.Fatalf("ESP in UDP: clamp %d/%d, want 1394/1374", m4, m6)
	}
	if err := a.InstallChild(ike.ChildKeys{Suite: gcm256, SPIIn: 0x2003, SPIOut: 0x3003, KeyIn: key, KeyOut: key}); err != nil {
		t.Fatal(err)
	}
	if m4, _ := a.clampMSS(); m4 != 1402 {
		t.Fatalf("raw again: clamp %d", m4)
	}
}
