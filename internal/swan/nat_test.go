package swan

import (
	"testing"

	"github.com/gresec/gresec/internal/natlab"
	"github.com/gresec/gresec/internal/nstest"
)

// startIn runs charon with conf in ns, stopped before the lab goes away.
func startIn(t *testing.T, ns string, conf Conn) *Charon {
	t.Helper()
	conf.PSK = testPSK
	c, err := Start(ns, conf.SwanctlConf(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("charon in %s (redacted log):\n%s\nstderr:\n%s", ns, c.RedactedLog(), c.Output())
		}
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// TestNATAndEncapReported: two charons, one behind a masquerading NAT,
// then two with encap = yes and no NAT. The shim lets the UDP-encapsulated
// CHILD_SA install (XFRMA_ENCAP in the NEWSA/UPDSA is no obstacle), and
// list-sas reports the encapsulation and the NAT flags that the gresec
// interop tests rely on.
func TestNATAndEncapReported(t *testing.T) {
	nstest.RequireRoot(t, "network namespaces, nftables, charon")
	if err := Install(); err != nil {
		t.Fatal(err)
	}
	t.Run("behind-nat", func(t *testing.T) {
		l, err := natlab.New(natlab.Options{Prefix: "swan-nat", RandomPorts: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		in, out := l.InsideAddr.Addr().String(), l.OutsideAddr.Addr().String()
		ini := &site{ns: l.Inside, charon: startIn(t, l.Inside.Name, Conn{Local: in, Remote: out})}
		// The responder sees the NAT's address; identities stay the
		// inside's real address.
		resp := &site{ns: l.Outside, charon: startIn(t, l.Outside.Name, Conn{Local: out, Remote: l.Public.String(), RemoteID: in})}
		if err := ini.charon.Initiate("gre"); err != nil {
			t.Fatal(err)
		}
		got := waitSAs(t, "IKE ESTABLISHED + CHILD_SA INSTALLED", func(sas []IKESA) bool {
			s, ok := oneIKE(sas)
			return ok && len(s.Installed()) == 1
		}, ini, resp)
		is, rs := got[ini][0], got[resp][0]
		if !is.NATLocal || is.NATRemote || !rs.NATRemote || rs.NATLocal || !is.NATAny || !rs.NATAny || is.NATFake || rs.NATFake {
			t.Errorf("NAT flags: initiator local %v remote %v any %v fake %v, responder local %v remote %v any %v fake %v; want the NAT in front of the initiator only",
				is.NATLocal, is.NATRemote, is.NATAny, is.NATFake, rs.NATLocal, rs.NATRemote, rs.NATAny, rs.NATFake)
		}
		if is.LocalPort != 4500 || is.RemotePort != 4500 || rs.LocalPort != 4500 || rs.RemotePort == 4500 || rs.RemotePort == 0 {
			t.Errorf("ports: initiator %d -> %d, responder %d <- %d; want 4500 both ends and a mapped port at the NAT",
				is.LocalPort, is.RemotePort, rs.LocalPort, rs.RemotePort)
		}
		for _, s := range []IKESA{is, rs} {
			if c := s.Installed()[0]; !c.Encap || c.Mode != "TRANSPORT" {
				t.Errorf("CHILD_SA %+v; want TRANSPORT with UDP encapsulation", c)
			}
		}
		f, err := l.Forwarded()
		if err != nil || f.ESPOut != 0 || f.ESPIn != 0 || f.UDPOut < 2 || f.UDPIn < 2 {
			t.Errorf("the NAT forwarded %+v (%v); want IKE in UDP only", f, err)
		}
	})
	t.Run("encap-without-nat", func(t *testing.T) {
		ini, resp := twoCharonsWith(t, Conn{Encap: true}, Options{})
		if err := ini.charon.Initiate("gre"); err != nil {
			t.Fatal(err)
		}
		got := waitSAs(t, "IKE ESTABLISHED + CHILD_SA INSTALLED", func(sas []IKESA) bool {
			s, ok := oneIKE(sas)
			return ok && len(s.Installed()) == 1
		}, ini, resp)
		// Each end fakes its own NAT detection hash, so each sees a NAT
		// in front of the other (nat-remote), none in front of itself.
		for s, sas := range got {
			sa := sas[0]
			if !sa.NATRemote || sa.NATLocal || !sa.NATAny || sa.LocalPort != 4500 || sa.RemotePort != 4500 || !sa.Installed()[0].Encap {
				t.Errorf("%s: %+v; want a NAT seen at the peer only, ports 4500 and an encapsulated CHILD_SA", s.ns.Name, sa)
			}
		}
	})
	t.Run("mobike-default-no-nat", func(t *testing.T) {
		// strongSwan's default mobike = yes: IKE floats to 4500 after
		// IKE_SA_INIT, the CHILD_SA stays raw ESP.
		ini, resp := twoCharonsWith(t, Conn{}, Options{})
		if err := ini.charon.Initiate("gre"); err != nil {
			t.Fatal(err)
		}
		got := waitSAs(t, "IKE ESTABLISHED + CHILD_SA INSTALLED", func(sas []IKESA) bool {
			s, ok := oneIKE(sas)
			return ok && len(s.Installed()) == 1
		}, ini, resp)
		for s, sas := range got {
			sa := sas[0]
			if sa.NATAny || sa.LocalPort != 4500 || sa.RemotePort != 4500 || sa.Installed()[0].Encap {
				t.Errorf("%s: %+v; want IKE on 4500, no NAT, raw ESP", s.ns.Name, sa)
			}
		}
	})
}
