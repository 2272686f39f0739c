package ike

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fakeConn collects what an engine sends; the test delivers it.
type fakeConn struct{ out [][]byte }

func (c *fakeConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	select {} // the stepped tests call handle directly
}
func (c *fakeConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	c.out = append(c.out, bytes.Clone(b))
	return len(b), nil
}

// fakeDP is a data plane with the Tunnel's semantics: InstallChild
// switches sending to the new SA, removing the sending SA leaves none. It
// records every moment it had no outbound SA after having had one.
type fakeDP struct {
	installed []ChildKeys // history, with cloned keys
	removed   []uint32
	bytesIn   map[uint32]uint64
	live      map[uint32]ChildKeys
	out       uint32 // inbound SPI of the sending child, 0: none
	gaps      []string
	seq       map[uint32]uint64 // last sequence number sent, by inbound SPI
}

func (d *fakeDP) ChildSequence(spi uint32) uint64 { return d.seq[spi] }

func (d *fakeDP) InstallChild(k ChildKeys) error {
	k.KeyIn, k.KeyOut = bytes.Clone(k.KeyIn), bytes.Clone(k.KeyOut)
	d.installed = append(d.installed, k)
	d.live[k.SPIIn] = k
	if !k.KeepOutbound || d.out == 0 {
		d.out = k.SPIIn
	}
	return nil
}

func (d *fakeDP) RemoveChild(spi uint32) error {
	d.removed = append(d.removed, spi)
	delete(d.live, spi)
	if d.out == spi {
		d.out = 0
		d.gaps = append(d.gaps, fmt.Sprintf("removed the sending SA %#x", spi))
	}
	return nil
}

func (d *fakeDP) ChildBytes(spi uint32) (uint64, uint64) {
	return d.bytesIn[spi], 0
}

// switchingDP adds SetOutbound to fakeDP.
type switchingDP struct{ *fakeDP }

func (d switchingDP) SetOutbound(spi uint32) error {
	if _, ok := d.live[spi]; !ok {
		return fmt.Errorf("no SA %#x", spi)
	}
	d.out = spi
	return nil
}

type testPeer struct {
	name    string
	e       *Engine
	conn    *fakeConn
	dp      *fakeDP
	addr    netip.AddrPort
	logs    *observer.ObservedLogs
	secrets secretSet // every key either peer held, for the log check
	mark    uint64    // engine event number at the start of a scenario
}

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func ikedIOS(local, remote string, initiate bool, seed uint64) Config {
	return Config{
		Local: netip.MustParseAddr(local), Remote: netip.MustParseAddr(remote), Initiate: initiate,
		LocalPSK: Secret("ThisShouldBeAStrongPassword"), RemotePSK: Secret("ThisShouldBeAStrongPassword"),
		Proposals:    MustParseProposals(ProtoIKE, "aes256gcm16-prfsha384-ecp384"),
		ESPProposals: MustParseProposals(ProtoESP, "aes256gcm16-ecp384"),
		Lifetime:     86400 * time.Second, ChildLifetime: 3600 * time.Second, ChildLifetimeBytes: 500 << 20,
		DPD:  30 * time.Second,
		Rand: rand.NewChaCha8([32]byte{byte(seed)}),
	}
}

// newPair makes an initiator a (198.18.0.1) and a responder b (198.18.0.2)
// configured like the iked + IOS pair; mutate may change either config first.
func newPair(t *testing.T, mutate func(a, b *Config)) (a, b *testPeer) {
	a, b = newPeers(t, mutate)
	t.Cleanup(func() {
		checkLogsHoldNoSecrets(t, a, b)
		checkTransitions(t, a, b)
	})
	return a, b
}

// checkTransitions fails the test if an engine made an SA state change
// that state.go does not allow.
func checkTransitions(t *testing.T, ps ...*testPeer) {
	t.Helper()
	for _, p := range ps {
		if n := p.e.counters.BadTransitions; n != 0 {
			for _, l := range p.logs.FilterMessageSnippet("invalid IKE SA state").All() {
				t.Errorf("%s: %s %v", p.name, l.Message, l.ContextMap())
			}
			t.Errorf("%s: %d invalid SA state transitions", p.name, n)
		}
	}
}

type secretSet map[string]bool

func (s secretSet) add(ks ...[]byte) {
	for _, k := range ks {
		if len(k) >= 8 {
			s[string(k)] = true
		}
	}
}

// newPeers is newPair without the log check at the end of the test.
func newPeers(t *testing.T, mutate func(a, b *Config)) (a, b *testPeer) {
	ca, cb := ikedIOS("198.18.0.1", "198.18.0.2", true, 1), ikedIOS("198.18.0.2", "198.18.0.1", false, 2)
	if mutate != nil {
		mutate(&ca, &cb)
	}
	secrets := secretSet{}
	secrets.add(ca.LocalPSK, ca.RemotePSK, cb.LocalPSK, cb.RemotePSK)
	mk := func(name string, c Config) *testPeer {
		core, logs := observer.New(zapcore.DebugLevel)
		p := &testPeer{name: name, conn: &fakeConn{}, dp: &fakeDP{bytesIn: map[uint32]uint64{}, live: map[uint32]ChildKeys{}}, logs: logs,
			addr: netip.AddrPortFrom(c.Local, 500), secrets: secrets}
		var dp DataPlane = switchingDP{p.dp}
		if noSwitch {
			dp = p.dp
		}
		p.e = New(c, dp, zap.New(core))
		p.e.conn = p.conn
		return p
	}
	return mk("a", ca), mk("b", cb)
}

// noSwitch makes newPair's data planes lack SetOutbound (set it only in
// tests that do not run in parallel).
var noSwitch bool

// harvest remembers the keys p holds now.
func harvest(p *testPeer) {
	k := p.e.ExportKeys()
	for _, x := range k.IKE {
		p.secrets.add(x.SKei, x.SKer)
	}
	for _, sa := range p.e.sas {
		p.secrets.add(sa.keys.SKd, sa.keys.SKpi, sa.keys.SKpr, sa.keys.SKei, sa.keys.SKer)
	}
	for _, c := range p.dp.installed {
		p.secrets.add(c.KeyIn, c.KeyOut)
	}
}

// checkLogsHoldNoSecrets looks for every key and PSK either peer held, in
// raw, hex and base64 form, in every field of every log entry.
func checkLogsHoldNoSecrets(t *testing.T, ps ...*testPeer) {
	t.Helper()
	for _, l := range leaks(ps...) {
		t.Errorf("logged key material: %s", l)
	}
}

// leaks returns the log lines that hold a key, as JSON (how zap writes
// them: bytes in base64) and as Go values.
func leaks(ps ...*testPeer) []string {
	for _, p := range ps {
		harvest(p)
	}
	var forms []string
	for k := range ps[0].secrets {
		s := []byte(k)
		forms = append(forms, k, hex.EncodeToString(s), strings.ToUpper(hex.EncodeToString(s)),
			base64.StdEncoding.EncodeToString(s), strings.Trim(fmt.Sprint(s), "[]"))
	}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	var out []string
	for _, p := range ps {
		for _, entry := range p.logs.All() {
			line := entry.Message + fmt.Sprint(entry.ContextMap())
			if buf, err := enc.EncodeEntry(entry.Entry, entry.Context); err == nil {
				line += buf.String()
			}
			for _, f := range forms {
				if strings.Contains(line, f) {
					out = append(out, p.name+": "+line)
					break
				}
			}
		}
	}
	return out
}

// deliver hands from's oldest unsent message to `to` and returns it.
func deliver(t *testing.T, from, to *testPeer, now time.Time) []byte {
	t.Helper()
	raw := drop(t, from)
	to.e.handle(raw, from.addr, now)
	harvest(to)
	return raw
}

// drop takes from's oldest unsent message away (a lost datagram).
func drop(t *testing.T, from *testPeer) []byte {
	t.Helper()
	if len(from.conn.out) == 0 {
		t.Fatalf("%s has nothing to send", from.name)
	}
	raw := from.conn.out[0]
	from.conn.out = from.conn.out[1:]
	return raw
}

func exchangeOf(t *testing.T, raw []byte) (ExchangeType, bool) {
	t.Helper()
	m, err := DecodeMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m.Exchange, m.IsResponse()
}

func quiet(t *testing.T, ps ...*testPeer) {
	t.Helper()
	for _, p := range ps {
		if len(p.conn.out) != 0 {
			t.Errorf("%s still has %d messages to send", p.name, len(p.conn.out))
		}
	}
}

func establish(t *testing.T, a, b *testPeer) {
	t.Helper()
	a.e.initiate(t0)
	for _, want := range []ExchangeType{IKE_SA_INIT, IKE_SA_INIT, IKE_AUTH, IKE_AUTH} {
		from, to := a, b
		if len(a.conn.out) == 0 {
			from, to = b, a
		}
		raw := deliver(t, from, to, t0)
		if x, _ := exchangeOf(t, raw); x != want {
			t.Fatalf("got %v, want %v", x, want)
		}
	}
	quiet(t, a, b)
	for _, p := range []*testPeer{a, b} {
		if st := p.e.Status(); st.State != "established" || len(st.Children) != 1 {
			t.Fatalf("%s: %+v", p.name, st)
		}
	}
}

func checkCrosswise(t *testing.T, a, b ChildKeys) {
	t.Helper()
	if a.SPIOut != b.SPIIn || a.SPIIn != b.SPIOut {
		t.Errorf("SPIs: a in %#x out %#x, b in %#x out %#x", a.SPIIn, a.SPIOut, b.SPIIn, b.SPIOut)
	}
	if len(a.KeyOut) != 36 || len(a.KeyIn) != 36 {
		t.Errorf("key lengths %d/%d", len(a.KeyIn), len(a.KeyOut))
	}
	if !a.KeyOut.Equal(b.KeyIn) || !a.KeyIn.Equal(b.KeyOut) {
		t.Error("keys do not match crosswise")
	}
	if a.KeyIn.Equal(a.KeyOut) {
		t.Error("both directions share a key")
	}
	if a.Transform != "aes256gcm16" || b.Transform != a.Transform {
		t.Errorf("transforms %q %q", a.Transform, b.Transform)
	}
}

func TestHandshake(t *testing.T) {
	a, b := newPair(t, nil)
	establish(t, a, b)
	if len(a.dp.installed) != 1 || len(b.dp.installed) != 1 {
		t.Fatalf("installed %d/%d", len(a.dp.installed), len(b.dp.installed))
	}
	checkCrosswise(t, a.dp.installed[0], b.dp.installed[0])
	ka, kb := a.dp.installed[0], b.dp.installed[0]
	if ka.Lifetime != time.Hour || ka.LifetimeBytes != 500<<20 {
		t.Errorf("lifetimes %v %d", ka.Lifetime, ka.LifetimeBytes)
	}
	sa, sb := a.e.Status(), b.e.Status()
	if sa.SPIi != sb.SPIi || sa.SPIr != sb.SPIr || sa.Suite != "aes256gcm16-prfsha384-ecp384" {
		t.Errorf("status a %+v b %+v", sa, sb)
	}
	// The child keys are KEYMAT from SK_d and the IKE_SA_INIT nonces (§2.17).
	i2r, r2i, _ := ChildKeymat(PRFSHA384, a.e.primary().keys.SKd, nil, a.e.primary().ni, a.e.primary().nr, 36)
	if !ka.KeyOut.Equal(i2r) || !kb.KeyOut.Equal(r2i) {
		t.Error("child keys are not KEYMAT in the i->r, r->i order")
	}
	// No key material in any log line (debug level included).
	for _, p := range []*testPeer{a, b} {
		for _, entry := range p.logs.All() {
			line := entry.Message + fmt.Sprint(entry.ContextMap())
			for _, k := range []Secret{ka.KeyIn, ka.KeyOut, a.e.primary().keys.SKd, a.e.primary().keys.SKei, Secret("ThisShouldBeAStrongPassword")} {
				if strings.Contains(line, hex.EncodeToString(k)) || strings.Contains(line, string(k)) {
					t.Errorf("%s logged key material: %s", p.name, line)
				}
			}
		}
		if p.logs.FilterMessage("IKE SA established").Len() != 1 {
			t.Errorf("%s: no 'IKE SA established' log", p.name)
		}
		for _, entry := range p.logs.FilterMessage("IKE SA established").All() {
			for _, f := range []string{"spi_i", "spi_r", "msgid", "exchange", "peer"} {
				if _, ok := entry.ContextMap()[f]; !ok {
					t.Errorf("%s: log lacks field %s: %v", p.name, f, entry.ContextMap())
				}
			}
		}
	}
}

func TestHandshakeOtherSuites(t *testing.T) {
	for _, c := range []struct{ ike, esp, wantESP string }{
		{"aes128gcm16-prfsha256-ecp256", "aes128gcm16", "aes128gcm16"},
		{"aes256gcm16-prfsha512-ecp521", "aes256gcm16-ecp521", "aes256gcm16"},
		{"aes256gcm16-prfsha256-curve25519", "aes256gcm16-curve25519", "aes256gcm16"},
		{"aes256gcm16-prfsha384-modp2048", "aes256gcm16-modp2048", "aes256gcm16"},
	} {
		a, b := newPair(t, func(a, b *Config) {
			a.Proposals, b.Proposals = MustParseProposals(ProtoIKE, c.ike), MustParseProposals(ProtoIKE, c.ike)
			a.ESPProposals, b.ESPProposals = MustParseProposals(ProtoESP, c.esp), MustParseProposals(ProtoESP, c.esp)
		})
		establish(t, a, b)
		if a.e.Status().Suite != c.ike || a.dp.installed[0].Transform != c.wantESP {
			t.Errorf("%s: suite %q transform %q", c.ike, a.e.Status().Suite, a.dp.installed[0].Transform)
		}
		ka, kb := a.dp.installed[0], b.dp.installed[0]
		if !ka.KeyOut.Equal(kb.KeyIn) || !ka.KeyIn.Equal(kb.KeyOut) {
			t.Errorf("%s: keys do not match", c.ike)
		}
	}
}

func TestInvalidKERetry(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) {
		// a guesses ecp256 first; b accepts only ecp384.
		a.Proposals = MustParseProposals(ProtoIKE, "aes256gcm16-prfsha384-ecp256-ecp384")
	})
	a.e.initiate(t0)
	first := deliver(t, a, b, t0)
	m, _ := DecodeMessage(first)
	if ke := m.Payloads.Get(PayloadKE).(*KE); DHGroup(ke.Group) != ECP256 {
		t.Fatalf("first guess %v", ke.Group)
	}
	resp := deliver(t, b, a, t0)
	m, _ = DecodeMessage(resp)
	if n := m.Payloads.Notify(INVALID_KE_PAYLOAD); n == nil || !bytes.Equal(n.Data, []byte{0, 20}) {
		t.Fatalf("responder did not ask for group 20: %+v", m.Payloads)
	}
	if len(b.e.sas) != 0 {
		t.Error("responder kept state for a request it refused")
	}
	second := deliver(t, a, b, t0)
	m, _ = DecodeMessage(second)
	if ke := m.Payloads.Get(PayloadKE).(*KE); DHGroup(ke.Group) != ECP384 || len(ke.Data) != 96 {
		t.Fatalf("retry with group %d, %d bytes", ke.Group, len(ke.Data))
	}
	deliver(t, b, a, t0) // IKE_SA_INIT response
	deliver(t, a, b, t0) // IKE_AUTH
	deliver(t, b, a, t0)
	quiet(t, a, b)
	if a.e.Status().State != "established" || a.e.Status().Suite != "aes256gcm16-prfsha384-ecp384" {
		t.Fatalf("%+v", a.e.Status())
	}
	checkCrosswise(t, a.dp.installed[0], b.dp.installed[0])
}

func TestRetransmission(t *testing.T) {
	a, b := newPair(t, nil)
	a.e.initiate(t0)
	deliver(t, a, b, t0)
	deliver(t, b, a, t0)
	lost := drop(t, a) // IKE_AUTH request lost
	a.e.tick(t0.Add(time.Second))
	quiet(t, a)
	a.e.tick(t0.Add(2 * time.Second))
	if len(a.conn.out) != 1 || !bytes.Equal(a.conn.out[0], lost) {
		t.Fatal("IKE_AUTH not retransmitted byte for byte")
	}
	deliver(t, a, b, t0.Add(2*time.Second))
	lostResp := drop(t, b) // and its response lost
	a.e.tick(t0.Add(5 * time.Second))
	quiet(t, a) // the timeout doubled to 4 s
	a.e.tick(t0.Add(6 * time.Second))
	deliver(t, a, b, t0.Add(6*time.Second))
	// b answers the retransmitted request from its cache, without
	// processing it again.
	if len(b.conn.out) != 1 || !bytes.Equal(b.conn.out[0], lostResp) {
		t.Fatal("response not replayed byte for byte")
	}
	if len(b.dp.installed) != 1 {
		t.Fatalf("responder installed %d children", len(b.dp.installed))
	}
	deliver(t, b, a, t0.Add(6*time.Second))
	quiet(t, a, b)
	if a.e.Status().State != "established" || a.e.Status().Counters.Retransmits != 2 {
		t.Fatalf("%+v", a.e.Status())
	}
	checkCrosswise(t, a.dp.installed[0], b.dp.installed[0])
	// A duplicate of an old response is ignored.
	a.e.handle(lostResp, b.addr, t0.Add(7*time.Second))
	if len(a.dp.installed) != 1 {
		t.Error("duplicate response installed another child")
	}
}

func TestGiveUpAndReconnect(t *testing.T) {
	a, _ := newPair(t, nil)
	a.e.initiate(t0)
	now := t0
	for i := 0; i < 10 && len(a.e.sas) != 0; i++ {
		a.conn.out = nil
		now = now.Add(time.Minute)
		a.e.tick(now)
	}
	if len(a.e.sas) != 0 || !strings.Contains(a.e.Status().LastError, "no response") {
		t.Fatalf("still trying: %+v", a.e.Status())
	}
	if got := a.e.Status().Counters.Retransmits; got != defaultTries-1 {
		t.Errorf("%d retransmits", got)
	}
	a.e.tick(now.Add(reconnectDelay))
	if len(a.e.sas) != 1 || len(a.conn.out) != 1 {
		t.Error("did not reconnect")
	}
}

func TestWrongPSK(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) { b.RemotePSK = Secret("something else") })
	handshake(t, a, b)
	if len(a.dp.installed)+len(b.dp.installed) != 0 {
		t.Error("child installed despite a bad PSK")
	}
	if b.e.Status().Counters.AuthFailures != 1 || !strings.Contains(a.e.Status().LastError, "AUTHENTICATION_FAILED") {
		t.Errorf("a %+v b %+v", a.e.Status(), b.e.Status())
	}
	if len(b.e.sas) != 0 || len(a.e.sas) != 0 {
		t.Error("state kept after failed authentication")
	}
}

func TestResponderChecksInitiatorAUTH(t *testing.T) {
	// b's identity check: a claims an FQDN b does not expect.
	a, b := newPair(t, func(a, b *Config) { a.LocalID = FQDNID("intruder.example"); b.RemoteID = AddrID(a.Local) })
	handshake(t, a, b)
	if len(b.dp.installed) != 0 || a.e.Status().State == "established" {
		t.Error("wrong identity accepted")
	}
}

func TestTSUnacceptable(t *testing.T) {
	// b thinks it is 198.18.0.3: a's TSr (198.18.0.2, GRE) does not cover it.
	a, b := newPair(t, func(a, b *Config) { b.Local = netip.MustParseAddr("198.18.0.3") })
	b.addr = netip.AddrPortFrom(a.e.cfg.Remote, 500) // what a sees as b's source
	handshake(t, a, b)
	if len(a.dp.installed)+len(b.dp.installed) != 0 {
		t.Fatal("child installed with mismatched selectors")
	}
	if !strings.Contains(a.e.Status().LastError, "TS_UNACCEPTABLE") {
		t.Errorf("a: %+v", a.e.Status())
	}
	// a deleted the childless IKE SA.
	if len(a.conn.out) != 1 {
		t.Fatalf("a sent %d messages", len(a.conn.out))
	}
	deliver(t, a, b, t0)
	if len(b.e.sas) != 0 {
		t.Error("b kept the IKE SA after a's delete")
	}
}

// handshake has a initiate and passes the four IKE_SA_INIT and IKE_AUTH
// messages to whichever peer is to receive one, whatever they say.
func handshake(t *testing.T, a, b *testPeer) {
	t.Helper()
	a.e.initiate(t0)
	for range 4 {
		if len(a.conn.out) > 0 {
			deliver(t, a, b, t0)
		} else {
			deliver(t, b, a, t0)
		}
	}
}

func TestResponderRequiresTransportMode(t *testing.T) {
	a, b := newPair(t, nil)
	a.e.initiate(t0)
	deliver(t, a, b, t0)
	deliver(t, b, a, t0)
	// Rebuild a's IKE_AUTH without USE_TRANSPORT_MODE.
	a.conn.out = nil
	sa := a.e.sas[0]
	sa.req = nil
	sa.nextReqID = 1
	idi := a.e.localID()
	inner := Payloads{&IDi{idi}, &Auth{Method: AuthPSK, Data: PSKAuth(sa.suite.PRF, a.e.cfg.LocalPSK, sa.initReq, sa.nr, sa.keys.SKpi, idi)}}
	inner = append(inner, a.e.childRequest(WithoutDH(a.e.cfg.ESPProposals), 0x1234)[1:]...)
	a.e.sendRequest(t0, sa, IKE_AUTH, inner, &testTask{sa: sa})
	deliver(t, a, b, t0)
	resp := drop(t, b)
	m, _ := DecodeMessage(resp)
	got, err := sa.in.Open(resp, m)
	if err != nil {
		t.Fatal(err)
	}
	if got.Notify(NO_PROPOSAL_CHOSEN) == nil || got.Get(PayloadAUTH) == nil || len(b.dp.installed) != 0 {
		t.Errorf("tunnel-mode request: %v", got)
	}
}

func noDPD(a, b *Config) { a.DPD, b.DPD = 0, 0 }

func TestChildRekeyPFS(t *testing.T) {
	a, b := newPair(t, noDPD)
	establish(t, a, b)
	old := a.dp.installed[0]
	rekeyTime := a.e.Status().Children[0].RekeyAt
	if lo, hi := t0.Add(3600*time.Second*85/100), t0.Add(3600*time.Second*88/100); rekeyTime.Before(lo) || rekeyTime.After(hi) {
		t.Errorf("child rekey at %v, want 85-88 %% of the lifetime", rekeyTime.Sub(t0))
	}
	if rb := b.e.Status().Children[0].RekeyAt; rb.Before(t0.Add(3600 * time.Second * 92 / 100)) {
		t.Errorf("responder rekeys its child at %v, want 92-95 %%", rb.Sub(t0))
	}
	a.e.tick(rekeyTime.Add(-time.Second))
	quiet(t, a)
	a.e.tick(rekeyTime)
	req := deliver(t, a, b, rekeyTime)
	m, _ := DecodeMessage(req)
	inner, err := b.e.primary().in.Open(req, m)
	if err != nil || m.Exchange != CREATE_CHILD_SA {
		t.Fatal(m.Exchange, err)
	}
	if ke, _ := inner.Get(PayloadKE).(*KE); ke == nil || DHGroup(ke.Group) != ECP384 {
		t.Error("child rekey without PFS KE")
	}
	if n := inner.Notify(REKEY_SA); n == nil || be32(n.SPI) != old.SPIIn {
		t.Error("REKEY_SA does not name the old SA")
	}
	deliver(t, b, a, rekeyTime) // response: a installs the new child, sends Delete
	if len(a.dp.installed) != 2 || len(b.dp.installed) != 2 {
		t.Fatalf("installed %d/%d", len(a.dp.installed), len(b.dp.installed))
	}
	checkCrosswise(t, a.dp.installed[1], b.dp.installed[1])
	if a.dp.installed[1].KeyOut.Equal(old.KeyOut) || a.dp.installed[1].SPIIn == old.SPIIn {
		t.Error("rekey reused keys or SPI")
	}
	// The responder keeps sending on the old SA until the initiator, which
	// installs the new one only on our answer, deletes the old: packets on
	// the new SA before then would be lost (strongSwan in the kernel peer
	// test dropped them).
	if a.dp.out != a.dp.installed[1].SPIIn {
		t.Errorf("initiator sends on %#x after the rekey, want the new %#x", a.dp.out, a.dp.installed[1].SPIIn)
	}
	if b.dp.out != old.SPIOut {
		t.Errorf("responder switched to %#x before the initiator deleted the old SA %#x", b.dp.out, old.SPIOut)
	}
	// Without PFS the keys would be prf+(SK_d, Ni|Nr): they must differ.
	deliver(t, a, b, rekeyTime) // INFORMATIONAL Delete
	if b.dp.out != b.dp.installed[1].SPIIn {
		t.Errorf("responder sends on %#x after the Delete, want the new %#x", b.dp.out, b.dp.installed[1].SPIIn)
	}
	if len(b.dp.gaps) > 0 {
		t.Errorf("responder had no outbound SA: %v", b.dp.gaps)
	}
	deliver(t, b, a, rekeyTime)
	quiet(t, a, b)
	if len(a.dp.removed) != 1 || a.dp.removed[0] != old.SPIIn || len(b.dp.removed) != 1 || b.dp.removed[0] != old.SPIOut {
		t.Errorf("removed a %x b %x", a.dp.removed, b.dp.removed)
	}
	for _, p := range []*testPeer{a, b} {
		if st := p.e.Status(); len(st.Children) != 1 || st.Counters.Rekeys != 1 {
			t.Errorf("%s: %+v", p.name, st)
		}
	}
}

// TestRekeyBeforeSequenceRunsOut: a CHILD_SA whose outbound sequence
// number nears 2^32 is rekeyed at once, long before its time lifetime.
func TestRekeyBeforeSequenceRunsOut(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) { noDPD(a, b); a.ChildLifetimeBytes, b.ChildLifetimeBytes = 0, 0 })
	establish(t, a, b)
	spi := a.dp.installed[0].SPIIn
	now := t0.Add(time.Minute)
	a.dp.seq = map[uint32]uint64{spi: seqRekeyAt - 1}
	a.e.tick(now)
	quiet(t, a)
	a.dp.seq[spi] = seqRekeyAt
	a.e.tick(now)
	req := deliver(t, a, b, now)
	if ex, _ := exchangeOf(t, req); ex != CREATE_CHILD_SA {
		t.Fatalf("sent %v, want CREATE_CHILD_SA", ex)
	}
	deliver(t, b, a, now)
	if len(a.dp.installed) != 2 {
		t.Fatalf("installed %d CHILD_SAs, want the rekeyed one too", len(a.dp.installed))
	}
}

func TestIKERekey(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) { noDPD(a, b); a.DPD = 30 * time.Second })
	establish(t, a, b)
	oldI, oldR := a.e.primary().spiI, a.e.primary().spiR
	oldSKd := bytes.Clone(a.e.primary().keys.SKd)
	at := a.e.Status().RekeyAt
	if lo, hi := t0.Add(86400*time.Second*85/100), t0.Add(86400*time.Second*88/100); at.Before(lo) || at.After(hi) {
		t.Errorf("IKE rekey at %v, want 85-88 %% of the lifetime", at.Sub(t0))
	}
	a.e.tick(at)
	deliver(t, a, b, at) // CREATE_CHILD_SA (IKE)
	deliver(t, b, a, at)
	deliver(t, a, b, at) // Delete old IKE SA
	deliver(t, b, a, at)
	quiet(t, a, b)
	if len(a.e.sas) != 1 || len(b.e.sas) != 1 {
		t.Fatal("old IKE SA not deleted")
	}
	sa, sb := a.e.primary(), b.e.primary()
	if sa.spiI == oldI || sa.spiR == oldR || sa.spiI != sb.spiI || sa.spiR != sb.spiR {
		t.Fatalf("SPIs after rekey: a %x/%x b %x/%x", sa.spiI, sa.spiR, sb.spiI, sb.spiR)
	}
	if !sa.keys.SKd.Equal(sb.keys.SKd) || sa.keys.SKd.Equal(oldSKd) {
		t.Error("new SK_d wrong")
	}
	if len(sa.children) != 1 || len(sb.children) != 1 || len(a.dp.removed)+len(b.dp.removed) != 0 {
		t.Error("children did not move to the new IKE SA")
	}
	// The new SA works: the child, long overdue, is rekeyed on it.
	a.e.tick(at.Add(time.Second))
	req := deliver(t, a, b, at.Add(time.Second))
	if m, _ := DecodeMessage(req); m.SPIi != sa.spiI || m.Exchange != CREATE_CHILD_SA || m.MessageID != 0 {
		t.Errorf("child rekey on the new SA: %+v", m)
	}
	for i := 0; i < 3; i++ {
		if len(b.conn.out) > 0 {
			deliver(t, b, a, at.Add(time.Second))
		} else {
			deliver(t, a, b, at.Add(time.Second))
		}
	}
	quiet(t, a, b)
	if len(a.dp.installed) != 2 || len(b.dp.removed) != 1 {
		t.Fatal("child rekey on the new IKE SA failed")
	}
	checkCrosswise(t, a.dp.installed[1], b.dp.installed[1])
	// And a liveness check.
	a.e.tick(at.Add(40 * time.Second))
	deliver(t, a, b, at.Add(40*time.Second))
	deliver(t, b, a, at.Add(40*time.Second))
	quiet(t, a, b)
	if sa.req != nil {
		t.Error("liveness check unanswered")
	}
}

func TestDPDDeadPeer(t *testing.T) {
	a, b := newPair(t, nil)
	establish(t, a, b)
	spi := a.dp.installed[0].SPIIn
	// Inbound ESP counts as life: no check while bytes arrive.
	a.dp.bytesIn[spi] = 100
	a.e.tick(t0.Add(29 * time.Second))
	a.e.tick(t0.Add(40 * time.Second))
	quiet(t, a)
	now := t0.Add(70 * time.Second)
	a.e.tick(now)
	if x, _ := exchangeOf(t, drop(t, a)); x != INFORMATIONAL {
		t.Fatal(x)
	}
	for i := 0; i < 10 && len(a.e.sas) != 0; i++ {
		now = now.Add(time.Minute)
		a.e.tick(now)
		a.conn.out = nil
	}
	if len(a.e.sas) != 0 || len(a.dp.removed) != 1 || a.dp.removed[0] != spi {
		t.Fatalf("dead peer not detected: %+v removed %x", a.e.Status(), a.dp.removed)
	}
}

func TestHostileInputDropped(t *testing.T) {
	a, b := newPair(t, nil)
	establish(t, a, b)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		junk := make([]byte, r.IntN(200))
		for j := range junk {
			junk[j] = byte(r.Uint32())
		}
		if len(junk) >= HeaderLen && i%2 == 0 {
			// Make some of it look like messages for the live SA.
			Header(junk).SetSPIi(b.e.primary().spiI)
			Header(junk).SetSPIr(b.e.primary().spiR)
			Header(junk).SetVersion(0x20)
			Header(junk).SetLength(uint32(len(junk)))
		}
		b.e.handle(junk, a.addr, t0)
	}
	if b.e.Status().State != "established" || len(b.dp.removed) != 0 {
		t.Error("junk disturbed the SA")
	}
	// From a stranger: dropped.
	b.e.handle([]byte{1}, netip.MustParseAddrPort("198.18.0.9:500"), t0)
	if b.e.Status().Counters.Dropped < 1000 {
		t.Errorf("dropped %d", b.e.Status().Counters.Dropped)
	}
}

// testTask is a request a test sends by hand: onResp (if set) sees the
// answer; no answer fails the SA.
type testTask struct {
	sa     *ikeSA
	onResp func(Payloads)
}

func (t *testTask) process(_ *Engine, _ time.Time, _ *Message, _ []byte, inner Payloads) string {
	if t.onResp != nil {
		t.onResp(inner)
	}
	return ""
}

func (t *testTask) timeout(e *Engine, now time.Time) { e.fail(now, t.sa, "test request: no response") }

// TestTickEvery: the timers run every busyTick only while something waits
// on a short clock (a handshake, a request in flight, a half-open SA, an
// initiator with no SA); established and quiet, every idleTick, so that
// many idle tunnels cost few wake-ups. A responder with no SA waits idle.
func TestTickEvery(t *testing.T) {
	a, b := newPair(t, nil)
	if got := b.e.tickEvery(); got != idleTick {
		t.Errorf("responder with no SA: %v, want %v", got, idleTick)
	}
	if got := a.e.tickEvery(); got != busyTick {
		t.Errorf("initiator with no SA: %v, want %v", got, busyTick)
	}
	a.e.initiate(t0)
	deliver(t, a, b, t0) // IKE_SA_INIT request: b holds a half-open SA
	if a.e.tickEvery() != busyTick || b.e.tickEvery() != busyTick {
		t.Errorf("handshake under way: a %v, b %v; want %v", a.e.tickEvery(), b.e.tickEvery(), busyTick)
	}
	a, b = newPair(t, nil)
	establish(t, a, b)
	if a.e.tickEvery() != idleTick || b.e.tickEvery() != idleTick {
		t.Errorf("established and quiet: a %v, b %v; want %v", a.e.tickEvery(), b.e.tickEvery(), idleTick)
	}
	a.e.sendLivenessCheck(t0, a.e.primary())
	if got := a.e.tickEvery(); got != busyTick {
		t.Errorf("liveness check in flight: %v, want %v", got, busyTick)
	}
	deliver(t, a, b, t0)
	deliver(t, b, a, t0)
	if got := a.e.tickEvery(); got != idleTick {
		t.Errorf("after the answer: %v, want %v", got, idleTick)
	}
}
