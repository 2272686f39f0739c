package integration

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/gresec/gresec/ikev1"
	"github.com/gresec/gresec/internal/ikeattack"
	"github.com/gresec/gresec/internal/netns"
)

// TestHostileIKEv1HalfOpenFlood: before the real initiator starts,
// someone spoofing its address sends a burst of IKEv1 Main Mode first
// messages with an acceptable proposal to the responder and never follows
// up (it cannot see the responder's cookies). The real initiator must then
// get in at once, not after the forged half-open SAs time out (30 s).
func TestHostileIKEv1HalfOpenFlood(t *testing.T) {
	p := newPair(t, pairOpt{keying: "ikev1", bResponds: true,
		ikeExtra: fmt.Sprintf("proposals = [%q]\nesp_proposals = [%q]\n", ikev1Proposal, ikev1Proposal)})
	p.start(p.b)
	var inj *ikeattack.Injector
	if err := p.a.ns.Do(func() (err error) { inj, err = ikeattack.NewInjector(0); return err }); err != nil {
		t.Fatal(err)
	}
	defer inj.Close()
	from, to := netip.AddrPortFrom(p.a.under.Addr(), 500), netip.AddrPortFrom(p.b.under.Addr(), 500)
	// aes128-sha1-modp2048 with a pre-shared key, as the real initiator
	// proposes it.
	sa := ikev1.SA{Proposals: []ikev1.Proposal{{Num: 1, Protocol: ikev1.ProtoISAKMP, Transforms: []ikev1.Transform{{Num: 1, ID: ikev1.KeyIKE,
		Attributes: []ikev1.Attribute{{Type: ikev1.AttrEncryption, Value: ikev1.EncrAESCBC}, {Type: ikev1.AttrKeyLength, Value: 128},
			{Type: ikev1.AttrHash, Value: ikev1.HashSHA1}, {Type: ikev1.AttrAuthMethod, Value: ikev1.AuthPSK}, {Type: ikev1.AttrGroup, Value: 14}}}}}}}.Encode()
	const forged = 200
	for range forged {
		msg := ikev1.Encode(ikev1.Header{ICookie: rand.Uint64() | 1, Exchange: ikev1.ExchangeMain}, []ikev1.Payload{{Type: ikev1.PayloadSA, Body: sa}})
		if err := inj.Send(from, to, msg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // bounded: 200 datagrams in about 0.3 s
	}
	if !netns.WaitFor(5*time.Second, func() bool {
		st, err := p.status(p.b)
		return err == nil && st.IKEv1 != nil && st.IKEv1.Received >= forged/2
	}) {
		t.Fatalf("the responder did not see the forged first messages\n%s", p.b.proc.Out)
	}
	start := time.Now()
	p.start(p.a)
	if !netns.WaitFor(15*time.Second, func() bool {
		st, err := p.status(p.a)
		return err == nil && st.Outbound != nil
	}) {
		st := p.mustStatus(p.b)
		t.Fatalf("the real initiator is not in 15 s after %d forged first messages; responder drops %v\n%s", forged, st.IKEv1.Drops, lastLines(p.b.proc.Out.String(), 20))
	}
	t.Logf("real initiator in after %v; responder drops %v", time.Since(start).Round(time.Millisecond), p.mustStatus(p.b).IKEv1.Drops)
}
