package swan

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
)

var testPSK = Key("gresec-swan-test-psk-not-secret")

type site struct {
	ns     *netns.NS
	addr   netip.Addr
	charon *Charon
}

// twoCharons starts one charon in each of two fresh namespaces joined by
// veth, configured as GRE-over-IPsec peers with the seed proposals.
func twoCharons(t *testing.T, v6 bool, opts Options) (ini, resp *site) {
	t.Helper()
	return twoCharonsOn(t, v6, Conn{}, opts)
}

// twoCharonsWith is twoCharons over IPv4 with the connection's other
// settings (MOBIKE, Encap, extras) taken from tmpl.
func twoCharonsWith(t *testing.T, tmpl Conn, opts Options) (ini, resp *site) {
	t.Helper()
	return twoCharonsOn(t, false, tmpl, opts)
}

func twoCharonsOn(t *testing.T, v6 bool, tmpl Conn, opts Options) (ini, resp *site) {
	t.Helper()
	nstest.RequireRoot(t, "network namespaces, charon")
	if err := Install(); err != nil {
		t.Fatal(err)
	}
	pa, pb := netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("198.18.0.2/24")
	if v6 {
		pa, pb = netip.MustParsePrefix("2001:db8:5a::1/64"), netip.MustParsePrefix("2001:db8:5a::2/64")
	}
	ini, resp = &site{addr: pa.Addr()}, &site{addr: pb.Addr()}
	for _, s := range []*site{ini, resp} {
		ns, err := netns.Create(netns.Unique("swan"))
		if err != nil {
			t.Fatal(err)
		}
		s.ns = ns
		t.Cleanup(func() {
			if err := ns.Delete(); err != nil {
				t.Error(err)
			}
		})
	}
	if err := netns.Link(ini.ns, "swan0", []netip.Prefix{pa}, resp.ns, "swan1", []netip.Prefix{pb}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*site{ini, resp} {
		peer := resp
		if s == resp {
			peer = ini
		}
		cc := tmpl
		cc.Local, cc.Remote, cc.PSK = s.addr.String(), peer.addr.String(), testPSK
		conf := cc.SwanctlConf()
		c, err := Start(s.ns.Name, conf, opts)
		if err != nil {
			t.Fatal(err)
		}
		s.charon = c
		// Registered after the namespace's cleanup, so it runs first:
		// charon must be gone before its namespace is deleted.
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("charon in %s (redacted log):\n%s\nstderr:\n%s", s.ns.Name, c.RedactedLog(), c.Output())
			}
			if err := c.Stop(); err != nil {
				t.Error(err)
			}
		})
	}
	return ini, resp
}

// waitSAs polls both sides' list-sas until cond holds for each (bounded).
func waitSAs(t *testing.T, what string, cond func([]IKESA) bool, sites ...*site) map[*site][]IKESA {
	t.Helper()
	out := map[*site][]IKESA{}
	for _, s := range sites {
		var last []IKESA
		var lastErr error
		ok := netns.WaitFor(15*time.Second, func() bool {
			last, lastErr = s.charon.SAs()
			return lastErr == nil && cond(last)
		})
		if !ok {
			t.Fatalf("%s: %s not reached: %+v %v", s.ns.Name, what, last, lastErr)
		}
		out[s] = last
	}
	return out
}

func oneIKE(sas []IKESA) (IKESA, bool) {
	if len(sas) != 1 || sas[0].State != "ESTABLISHED" {
		return IKESA{}, false
	}
	return sas[0], true
}

func TestChildSAInstallRekeyAndKeys(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) { testChildSAInstallRekeyAndKeys(t, v6) })
	}
}

func testChildSAInstallRekeyAndKeys(t *testing.T, v6 bool) {
	ini, resp := twoCharons(t, v6, Options{})
	if err := ini.charon.Initiate("gre"); err != nil {
		t.Fatal(err)
	}

	// Both sides: IKE SA ESTABLISHED with the seed suite, one CHILD_SA
	// INSTALLED in transport mode for GRE only.
	first := waitSAs(t, "IKE ESTABLISHED + CHILD_SA INSTALLED", func(sas []IKESA) bool {
		s, ok := oneIKE(sas)
		return ok && len(s.Installed()) == 1
	}, ini, resp)
	is, rs := first[ini][0], first[resp][0]
	for _, s := range []IKESA{is, rs} {
		if s.Version != 2 || s.EncrAlg != "AES_GCM_16" || s.EncrKey != 256 || s.PRF != "PRF_HMAC_SHA2_384" || s.DHGroup != "ECP_384" {
			t.Errorf("IKE SA suite: %+v", s)
		}
		c := s.Installed()[0]
		if c.Mode != "TRANSPORT" || c.Protocol != "ESP" || c.EncrAlg != "AES_GCM_16" || c.EncrKey != 256 {
			t.Errorf("CHILD_SA: %+v", c)
		}
		if c.DHGroup != "" {
			t.Errorf("IKE_AUTH CHILD_SA has DH group %s; strongSwan sends none there", c.DHGroup)
		}
		if len(c.LocalTS) != 1 || !strings.HasSuffix(c.LocalTS[0], "[gre]") || len(c.RemoteTS) != 1 || !strings.HasSuffix(c.RemoteTS[0], "[gre]") {
			t.Errorf("traffic selectors %v === %v, want host/GRE only", c.LocalTS, c.RemoteTS)
		}
	}
	if !is.Initiator || rs.Initiator {
		t.Errorf("initiator flags: %v %v", is.Initiator, rs.Initiator)
	}
	if is.SPIi != rs.SPIi || is.SPIr != rs.SPIr || is.SPIi == 0 || is.SPIr == 0 {
		t.Errorf("IKE SPIs differ: %016x/%016x vs %016x/%016x", is.SPIi, is.SPIr, rs.SPIi, rs.SPIr)
	}
	ic, rc := is.Installed()[0], rs.Installed()[0]
	if ic.SPIIn != rc.SPIOut || ic.SPIOut != rc.SPIIn {
		t.Errorf("CHILD_SA SPIs not crosswise: initiator in %08x out %08x, responder in %08x out %08x", ic.SPIIn, ic.SPIOut, rc.SPIIn, rc.SPIOut)
	}
	if !strings.Contains(ini.charon.Output(), "UPDSA") || !strings.Contains(ini.charon.Output(), "NEWSA") {
		t.Errorf("the shim did not rewrite UPDSA/NEWSA:\n%s", ini.charon.Output())
	}

	// Rekey the child from the initiator: a new CHILD_SA with PFS.
	if _, err := ini.charon.Swanctl("--rekey", "--child", "gre"); err != nil {
		t.Fatal(err)
	}
	second := waitSAs(t, "rekeyed CHILD_SA INSTALLED with PFS", func(sas []IKESA) bool {
		s, ok := oneIKE(sas)
		if !ok {
			return false
		}
		for _, c := range s.Installed() {
			if c.UniqueID != ic.UniqueID && c.DHGroup == "ECP_384" {
				return true
			}
		}
		return false
	}, ini, resp)
	newChild := func(s IKESA) ChildSA {
		for _, c := range s.Installed() {
			if c.UniqueID != ic.UniqueID {
				return c
			}
		}
		return ChildSA{}
	}
	ic2, rc2 := newChild(second[ini][0]), newChild(second[resp][0])
	if ic2.SPIIn != rc2.SPIOut || ic2.SPIOut != rc2.SPIIn || ic2.SPIIn == ic.SPIIn || ic2.SPIOut == ic.SPIOut {
		t.Errorf("rekeyed SPIs: initiator in %08x out %08x, responder in %08x out %08x (old %08x %08x)",
			ic2.SPIIn, ic2.SPIOut, rc2.SPIIn, rc2.SPIOut, ic.SPIIn, ic.SPIOut)
	}
	if second[ini][0].SPIi != is.SPIi {
		t.Error("the IKE SA changed on a CHILD_SA rekey")
	}
	for _, s := range []*site{ini, resp} {
		if !strings.Contains(s.charon.Log(), "selected proposal: ESP:AES_GCM_16_256/ECP_384/NO_EXT_SEQ") {
			t.Errorf("%s: log does not show the PFS group in the selected proposal", s.ns.Name)
		}
	}

	// The logged keys agree crosswise and follow from SK_d and the seeds.
	ik := childKeys(t, ini, 2)
	rk := childKeys(t, resp, 2)
	for i := range ik {
		a := ik[i]
		var b *ChildKeyLog
		for j := range rk {
			if rk[j].SPIIn == a.SPIOut {
				b = &rk[j]
			}
		}
		if b == nil {
			t.Fatalf("responder logged no CHILD_SA with inbound SPI %08x", a.SPIOut)
		}
		if b.SPIOut != a.SPIIn || !a.Initiator || b.Initiator {
			t.Errorf("child %d: SPIs/roles: %08x/%08x %v vs %08x/%08x %v", i, a.SPIIn, a.SPIOut, a.Initiator, b.SPIIn, b.SPIOut, b.Initiator)
		}
		if len(a.KeyOut) != 36 || !bytes.Equal(a.KeyOut, b.KeyIn) || !bytes.Equal(a.KeyIn, b.KeyOut) || bytes.Equal(a.KeyIn, a.KeyOut) {
			t.Errorf("child %d: keys do not agree crosswise (lengths %d %d %d %d)", i, len(a.KeyIn), len(a.KeyOut), len(b.KeyIn), len(b.KeyOut))
		}
		if !bytes.Equal(a.DHSecret, b.DHSecret) || (i == 1) != (len(a.DHSecret) == 48) {
			t.Errorf("child %d: PFS secrets: %d and %d bytes, equal %v", i, len(a.DHSecret), len(b.DHSecret), bytes.Equal(a.DHSecret, b.DHSecret))
		}
		// RFC 7296 §2.17: KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr).
		km := prfPlus(a.IKE.SKd, a.Seed, 72)
		if !bytes.Equal(km[:36], a.EncrInitiator) || !bytes.Equal(km[36:], a.EncrResponder) {
			t.Errorf("child %d: logged keys are not prf+(SK_d, seed)", i)
		}
		if i == 1 && !bytes.HasPrefix(a.Seed, a.DHSecret) {
			t.Error("rekey seed does not start with the PFS secret")
		}
	}
	if ik[0].SPIIn != ic.SPIIn || ik[1].SPIIn != ic2.SPIIn || ik[1].SPIOut != ic2.SPIOut {
		t.Errorf("logged SPIs differ from list-sas")
	}

	// IKE keys: the same on both sides, for the SPIs list-sas shows, and
	// RFC 7296 §2.14 holds with the nonces from the first child's seed.
	ii, err := ini.charon.IKEKeys()
	if err != nil {
		t.Fatal(err)
	}
	ri, err := resp.charon.IKEKeys()
	if err != nil {
		t.Fatal(err)
	}
	a, b := ii[0], ri[0]
	if a.SPIi != is.SPIi || a.SPIr != is.SPIr || b.SPIi != is.SPIi || b.SPIr != is.SPIr {
		t.Errorf("logged IKE SPIs %016x/%016x, %016x/%016x; list-sas %016x/%016x", a.SPIi, a.SPIr, b.SPIi, b.SPIr, is.SPIi, is.SPIr)
	}
	if !bytes.Equal(a.SKei, b.SKei) || !bytes.Equal(a.SKer, b.SKer) || !bytes.Equal(a.SKd, b.SKd) || len(a.SKei) != 36 || bytes.Equal(a.SKei, a.SKer) {
		t.Error("SK_e*/SK_d differ between the sides")
	}
	nonces := ik[0].Seed
	if !bytes.Equal(prf(nonces, a.GIR), a.SKEYSEED) {
		t.Error("SKEYSEED != prf(Ni | Nr, g^ir)")
	}
	spis := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(append([]byte{}, nonces...), a.SPIi), a.SPIr)
	want := prfPlus(a.SKEYSEED, spis, 48+36+36+48+48)
	got := bytes.Join([][]byte{a.SKd, a.SKei, a.SKer, a.SKpi, a.SKpr}, nil)
	if !bytes.Equal(want, got) {
		t.Error("SK_* != prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)")
	}

	// Stop ends charon by PID and removes its directory.
	pid, dir := ini.charon.PID(), ini.charon.Dir()
	if err := ini.charon.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("charon pid %d still there after Stop: %v", pid, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Stop: %v", dir, err)
	}
	if !strings.Contains(ini.charon.Log(), "CHILD_SA gre{2} state change: INSTALLING => INSTALLED") {
		t.Error("Log() after Stop lost the log")
	}
}

func childKeys(t *testing.T, s *site, n int) []ChildKeyLog {
	t.Helper()
	var keys []ChildKeyLog
	var err error
	// The log is written as charon goes; the responder may still be
	// logging the last install when list-sas already shows it.
	netns.WaitFor(10*time.Second, func() bool {
		keys, err = s.charon.ChildKeys()
		return err == nil && len(keys) >= n
	})
	if len(keys) != n {
		t.Fatalf("%s: %d CHILD_SA key sets in the log, want %d (%v)", s.ns.Name, len(keys), n, err)
	}
	return keys
}

// Without the shim this kernel refuses the SAs and strongSwan gives up on
// the CHILD_SA: the reason the shim exists.
func TestWithoutShimChildSAFails(t *testing.T) {
	ini, resp := twoCharons(t, false, Options{NoShim: true})
	if err := ini.charon.Initiate("gre"); err == nil {
		t.Fatal("CHILD_SA came up without the shim: is this kernel's ESP available now? Then the shim is not needed")
	}
	sas := waitSAs(t, "IKE SA ESTABLISHED", func(sas []IKESA) bool { _, ok := oneIKE(sas); return ok }, ini, resp)
	for s, l := range sas {
		if len(l[0].Installed()) != 0 {
			t.Errorf("%s: CHILD_SA installed without the shim", s.ns.Name)
		}
	}
	if !strings.Contains(resp.charon.Log(), "unable to add SAD entry") {
		t.Error("responder log does not show the kernel refusing the SA")
	}
}

func prf(key, data []byte) []byte {
	m := hmac.New(sha512.New384, key)
	m.Write(data)
	return m.Sum(nil)
}

func prfPlus(key, seed []byte, n int) []byte {
	var out, t []byte
	for i := byte(1); len(out) < n; i++ {
		t = prf(key, append(append(append([]byte{}, t...), seed...), i))
		out = append(out, t...)
	}
	return out[:n]
}
