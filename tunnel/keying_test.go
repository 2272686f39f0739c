package tunnel

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/rawip"
)

// ikePipe is two tunnels keyed as the IKE engine keys them (InstallChild,
// SetOutbound, RemoveChild), with no devices.
func ikePipe(t *testing.T, grace time.Duration) (a, b *Tunnel) {
	mk := func(local, remote string) *Tunnel {
		cfg := &config.Config{Local: netip.MustParseAddr(local), Remote: netip.MustParseAddr(remote),
			MTU: 1442, Keying: config.KeyingIKEv2, ReplayWindow: 1024}
		return &Tunnel{cfg: cfg, log: zap.NewNop(), remote: cfg.Remote, sadb: &esp.DB{}, drainGrace: grace}
	}
	return mk("198.18.0.1", "198.18.0.2"), mk("198.18.0.2", "198.18.0.1")
}

// child installs one CHILD_SA on both tunnels: a's inbound SPI spiA, b's
// spiB. b answered the exchange: it keeps sending on its current SA.
func child(t *testing.T, a, b *Tunnel, spiA, spiB uint32) {
	t.Helper()
	kAB, kBA := bytes.Repeat([]byte{byte(spiA)}, 36), bytes.Repeat([]byte{byte(spiB)}, 36)
	if err := b.InstallChild(ike.ChildKeys{Suite: gcm256, SPIIn: spiB, SPIOut: spiA, KeyIn: kAB, KeyOut: kBA, ReplayWindow: 1024, KeepOutbound: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.InstallChild(ike.ChildKeys{Suite: gcm256, SPIIn: spiA, SPIOut: spiB, KeyIn: kBA, KeyOut: kAB, ReplayWindow: 1024}); err != nil {
		t.Fatal(err)
	}
}

// sealNow seals one inner packet with from's current outbound SA, as the
// send pump does when it takes a batch: the packet may reach the peer
// much later.
func sealNow(t *testing.T, from *Tunnel) []byte { return sealWith(t, from, from.sadb.Outbound()) }

func sealWith(t *testing.T, from *Tunnel, sa *esp.SA) []byte {
	t.Helper()
	buf := make([]byte, sendHeadroom+from.cfg.MTU+sendTailroom)
	copy(buf[sendHeadroom:], udpPacket(100))
	var m rawip.Message
	if !from.encapsulate(&m, buf, 100, sa) {
		t.Fatal("seal failed")
	}
	return bytes.Clone(m.Buf[m.Off : m.Off+m.N])
}

func deliver(to *Tunnel, wire []byte) bool {
	base := make([]byte, tunWriteOffset+recvBufSize)
	m := rawip.Message{Buf: base[tunWriteOffset:], Addr: to.remote}
	m.N = copy(m.Buf, wire)
	return to.decapsulate(&m, base) != nil
}

// TestRekeyKeepsPacketsSealedBeforeTheSwitch follows the engine's
// make-before-break order for a rekey a initiates, with a packet each way
// sealed on the old CHILD_SA just before its sender switched and delivered
// only after the receiver removed that CHILD_SA (its IKE goroutine read the
// DELETE before its receive pump reached the packet). Both must be
// accepted while the old inbound SA drains, and refused once it is gone.
func TestRekeyKeepsPacketsSealedBeforeTheSwitch(t *testing.T) {
	const grace = 300 * time.Millisecond
	a, b := ikePipe(t, grace)
	child(t, a, b, 0xa1, 0xb1)
	if err := a.SetOutbound(0xa1); err != nil { // first CHILD_SA: b sends on it too
		t.Fatal(err)
	}
	if err := b.SetOutbound(0xb1); err != nil {
		t.Fatal(err)
	}

	// a rekeys: b answers (and keeps sending on the old SA), a installs
	// and switches.
	fromA := sealNow(t, a) // in a's batch as it switches
	child(t, a, b, 0xa2, 0xb2)
	if got := a.sadb.Outbound().SPI(); got != 0xb2 {
		t.Fatalf("initiator sends on 0x%x after the rekey, want 0xb2", got)
	}
	// a's DELETE of the old CHILD_SA: b switches, then removes it.
	oldB := b.sadb.Outbound()
	fromB := sealWith(t, b, oldB) // in b's batch as it switches
	if err := b.SetOutbound(0xb2); err != nil {
		t.Fatal(err)
	}
	if err := b.RemoveChild(0xb1); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveChild(0xa1); err != nil { // b's answer to the DELETE
		t.Fatal(err)
	}
	if a.sadb.Outbound().SPI() != 0xb2 || b.sadb.Outbound().SPI() != 0xa2 {
		t.Fatal("removing the old CHILD_SA moved sending")
	}
	if !deliver(b, fromA) || !deliver(a, fromB) {
		t.Fatalf("a packet sealed on the old SA before the switch was dropped after its DELETE: a %v, b %v",
			a.Status().Drops, b.Status().Drops)
	}
	if !deliver(a, sealNow(t, b)) || !deliver(b, sealNow(t, a)) {
		t.Fatal("the new CHILD_SA does not carry traffic")
	}

	st := a.Status()
	if len(st.Inbound) != 1 || st.Inbound[0].SPI != "0x000000a2" {
		t.Errorf("installed inbound SAs %+v, want only 0xa2", st.Inbound)
	}
	if len(st.Draining) != 1 || st.Draining[0].SPI != "0x000000a1" || st.Draining[0].Packets != 1 || st.Draining[0].RemovedInSeconds < 1 {
		t.Errorf("draining inbound SAs %+v, want 0xa1 with its 1 packet", st.Draining)
	}
	if d := st.Drops["esp_bad_spi"]; d != 0 {
		t.Errorf("esp_bad_spi %d", d)
	}

	// After the grace the old SA is gone: a late packet on it is refused.
	late := sealWith(t, b, oldB)
	time.Sleep(grace + 200*time.Millisecond)
	if deliver(a, late) {
		t.Error("a retired SA still accepts packets after its grace")
	}
	st = a.Status()
	if len(st.Draining) != 0 || st.Drops["esp_bad_spi"] != 1 {
		t.Errorf("after the grace: draining %+v, esp_bad_spi %d (want none, 1)", st.Draining, st.Drops["esp_bad_spi"])
	}
}

// TestRemoveChildWhileSendingStopsSendingAtOnce: a delete (not a rekey)
// of the CHILD_SA that sends stops sending now, though its inbound half
// drains; a rekey storm keeps at most esp.MaxDraining SAs draining.
func TestRemoveChildWhileSendingStopsSendingAtOnce(t *testing.T) {
	a, b := ikePipe(t, time.Hour)
	child(t, a, b, 0x10, 0x20)
	if err := a.RemoveChild(0x10); err != nil {
		t.Fatal(err)
	}
	if a.sadb.Outbound() != nil {
		t.Error("still sending on a deleted CHILD_SA")
	}
	if got := a.ChildSequence(0x10); got != 0 {
		t.Errorf("ChildSequence of a deleted CHILD_SA = %d", got)
	}
	for i := range uint32(20) {
		child(t, a, b, 0x100+i, 0x200+i)
		if err := a.RemoveChild(0x100 + i); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(a.Status().Draining); n != esp.MaxDraining {
		t.Errorf("%d inbound SAs draining after 21 removals, want the cap %d", n, esp.MaxDraining)
	}
	a.sadb.FlushDraining()
	if st := a.Status(); len(st.Draining) != 0 || len(st.Inbound) != 0 {
		t.Errorf("after a flush: inbound %+v, draining %+v", st.Inbound, st.Draining)
	}
}

// gcm256 is the suite the tests' CHILD_SAs were negotiated with.
var gcm256 = ike.Suite{Encr: ike.ENCR_AES_GCM_16, KeyBits: 256}
