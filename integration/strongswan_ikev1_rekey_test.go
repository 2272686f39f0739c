package integration

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/swan"
	"github.com/gresec/gresec/tunnel"
)

// v1Cookies is a phase 1 SA's cookies in gresec's status format.
func v1Cookies(s swan.IKESA) string { return fmt.Sprintf("%016x_i %016x_r", s.SPIi, s.SPIr) }

// v1State is both sides' view of the phase 1 and phase 2 SAs.
type v1State struct {
	gresec tunnel.Status
	swan   []swan.IKESA
}

// v1State reads both sides' SAs.
func (sp *swanPair) v1State() (v1State, error) {
	var s v1State
	var err error
	if s.gresec, err = sp.status(sp.a); err != nil {
		return s, err
	}
	s.swan, err = sp.charon.SAs()
	return s, err
}

// established: strongSwan's ESTABLISHED phase 1 SAs, by cookies.
func (s v1State) established() []string {
	var out []string
	for _, ike := range s.swan {
		if ike.State == "ESTABLISHED" {
			out = append(out, v1Cookies(ike))
		}
	}
	return out
}

// gresecQMIdle: gresec's established phase 1 SAs, by cookies.
func (s v1State) gresecQMIdle() []string {
	var out []string
	if s.gresec.IKEv1 == nil {
		return nil
	}
	for _, p := range s.gresec.IKEv1.Phase1 {
		if p.State == "QM_IDLE" {
			out = append(out, p.Cookies)
		}
	}
	return out
}

// gresecHas reports whether gresec sends on spiOut and receives on spiIn.
func (s v1State) gresecHas(spiIn, spiOut uint32) bool {
	in := false
	for _, sa := range s.gresec.Inbound {
		in = in || sa.SPI == fmt.Sprintf("0x%08x", spiIn)
	}
	return in && s.gresec.Outbound != nil && s.gresec.Outbound.SPI == fmt.Sprintf("0x%08x", spiOut)
}

// dumpV1 is both sides' SAs and logs, for a failure message.
func (sp *swanPair) dumpV1(what string) string {
	raw, _ := sp.charon.ListSAs()
	st, _ := sp.status(sp.a)
	return fmt.Sprintf("%s\nstrongSwan:\n%s\ngresec ikev1 %+v out %+v in %+v\ngresec log:\n%s\nstrongSwan log:\n%s",
		what, raw, st.IKEv1, st.Outbound, st.Inbound, lastLines(sp.a.proc.Out.String(), 30), lastLines(sp.charon.RedactedLog(), 60))
}

// TestStrongSwanIKEv1Phase1Rekey: the phase 1 (ISAKMP) SA is replaced
// against strongSwan with version = 1, by either side, while the phase 2
// SA keeps carrying our ESP.
//   - gresec initiates with lifetime = "1m" (the least the config takes):
//     a new Main Mode completes before the old SA expires, strongSwan lists
//     the new cookies ESTABLISHED, gresec shows them QM_IDLE; when the old
//     SA expires gresec deletes it, and both sides end with the new phase
//     1 SA only while the phase 2 SA (same SPIs) stays installed on both
//     and our ESP still decrypts with strongSwan's keys.
//   - strongSwan reauthenticates (`swanctl --rekey --ike`: charon 5.9 runs
//     a new Main Mode for IKEv1, moves the phase 2 SA to it and keeps the
//     old SA in REKEYING, unused, until it expires): gresec answers it;
//     strongSwan has exactly the new phase 1 SA ESTABLISHED, holding the
//     old phase 2 SA, which still carries our ESP; a phase 2 rekey by
//     strongSwan then runs on the new phase 1 SA.
func TestStrongSwanIKEv1Phase1Rekey(t *testing.T) {
	for _, tc := range []struct {
		name            string
		gresecInitiates bool
	}{{"gresec-initiates", true}, {"strongswan-reauthenticates", false}} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			extra := ""
			if tc.gresecInitiates {
				extra = "lifetime = \"1m\"\n"
			}
			sp := startSwanV1(t, tc.gresecInitiates, extra, swan.Conn{})
			st, child, ike := sp.installedV1(t, "")
			old := v1Cookies(ike)
			spiIn, spiOut := child.SPIIn, child.SPIOut // strongSwan's view
			s0, err := sp.v1State()
			if err != nil {
				t.Fatal(err)
			}
			if q := s0.gresecQMIdle(); len(q) != 1 || q[0] != old {
				t.Fatalf("gresec's phase 1 SAs in QM_IDLE %q, want strongSwan's %q", q, old)
			}
			t.Logf("phase 1 %s, phase 2 0x%08x/0x%08x after %v", old, spiIn, spiOut, time.Since(start).Round(time.Millisecond))
			if !tc.gresecInitiates {
				if out, err := sp.charon.Swanctl("--rekey", "--ike", "gre"); err != nil {
					t.Fatalf("swanctl --rekey --ike: %v\n%s", err, out)
				}
			}

			// A new phase 1 SA, established on both sides.
			var s v1State
			var fresh string
			rekeyed := time.Now()
			if !netns.WaitFor(70*time.Second, func() bool {
				if s, err = sp.v1State(); err != nil {
					return false
				}
				for _, c := range s.established() {
					for _, g := range s.gresecQMIdle() {
						if c == g && c != old {
							fresh = c
							return true
						}
					}
				}
				return false
			}) {
				t.Fatal(sp.dumpV1("no new phase 1 SA established on both sides within 70 s"))
			}
			t.Logf("new phase 1 %s after %v; strongSwan has %q, gresec %q", fresh, time.Since(rekeyed).Round(time.Millisecond), s.established(), s.gresecQMIdle())
			if tc.gresecInitiates {
				// make-before-break: the old SA is still there.
				if !slices.Contains(s.gresecQMIdle(), old) {
					t.Errorf("gresec's old phase 1 SA %s went before the new one was up: %q", old, s.gresecQMIdle())
				}
			}
			for _, ike := range s.swan {
				if v1Cookies(ike) == fresh && ike.Initiator == tc.gresecInitiates {
					t.Errorf("strongSwan initiator of the new phase 1 SA = %v, want %v", ike.Initiator, !tc.gresecInitiates)
				}
			}

			// The phase 2 SA outlives the phase 1 SA that made it: the new
			// phase 1 SA adopts it on strongSwan's side (charon: "detected
			// reauth of existing IKE_SA, adopting 1 children"), gresec keeps
			// it (IKEv1 children do not depend on their phase 1 SA).
			keeps := func(s v1State) {
				t.Helper()
				for _, ike := range s.swan {
					ins := ike.Installed()
					if v1Cookies(ike) == fresh && (len(ins) != 1 || ins[0].SPIIn != spiIn || ins[0].SPIOut != spiOut) {
						t.Errorf("strongSwan's new phase 1 SA holds phase 2 SAs %+v, want the old one 0x%08x/0x%08x", ins, spiIn, spiOut)
					}
					if v1Cookies(ike) != fresh && len(ike.Children) != 0 {
						t.Errorf("strongSwan's old phase 1 SA %s still holds phase 2 SAs %+v", v1Cookies(ike), ike.Children)
					}
				}
				if !s.gresecHas(spiOut, spiIn) || len(s.gresec.IKEv1.Phase2) != 1 || len(s.gresec.Inbound) != 1 {
					t.Errorf("gresec's phase 2 SAs: out %+v in %+v, want only 0x%08x/0x%08x", s.gresec.Outbound, s.gresec.Inbound, spiOut, spiIn)
				}
			}
			keeps(s)
			if tc.gresecInitiates {
				// The old phase 1 SA expires at gresec, which deletes it
				// on both sides: one phase 1 SA is left.
				if !netns.WaitFor(30*time.Second, func() bool {
					if s, err = sp.v1State(); err != nil {
						return false
					}
					return len(s.swan) == 1 && len(s.gresec.IKEv1.Phase1) == 1
				}) {
					t.Fatal(sp.dumpV1("the old phase 1 SA did not go on both sides within 30 s of its expiry"))
				}
				if e, g := s.established(), s.gresecQMIdle(); len(e) != 1 || e[0] != fresh || len(g) != 1 || g[0] != fresh {
					t.Errorf("phase 1 SAs at the end: strongSwan %q, gresec %q; want only %s", e, g, fresh)
				}
				keeps(s)
				sp.checkKeysAgree(t, st.Outbound.SPI)
			} else {
				// charon keeps the SA it reauthenticated in REKEYING (no
				// children, used for nothing) until it expires, and gresec
				// keeps the peer's SA as long as the peer does; gresec's
				// exchanges go on the newest.
				if e := s.established(); len(e) != 1 || e[0] != fresh {
					t.Errorf("strongSwan's ESTABLISHED phase 1 SAs %q, want only %s", e, fresh)
				}
				for _, ike := range s.swan {
					if v1Cookies(ike) != fresh && ike.State != "REKEYING" && ike.State != "DELETING" {
						t.Errorf("strongSwan's old phase 1 SA %s is %s, want REKEYING", v1Cookies(ike), ike.State)
					}
				}
				sp.checkKeysAgree(t, st.Outbound.SPI)
				// The new phase 1 SA is the one in use: a phase 2 rekey by
				// strongSwan runs on it and gresec installs the result.
				if out, err := sp.charon.Swanctl("--rekey", "--child", "gre"); err != nil {
					t.Fatalf("swanctl --rekey --child: %v\n%s", err, out)
				}
				st2, child2, ike2 := sp.installedV1(t, st.Outbound.SPI)
				if v1Cookies(ike2) != fresh || child2.DHGroup != "MODP_2048" {
					t.Errorf("the phase 2 rekey ran on phase 1 SA %s with PFS %q, want %s with MODP_2048", v1Cookies(ike2), child2.DHGroup, fresh)
				}
				if g := sp.mustStatus(sp.a); g.IKEv1 == nil || len(g.IKEv1.Phase1) == 0 || g.IKEv1.Phase1[len(g.IKEv1.Phase1)-1].Cookies != fresh {
					t.Errorf("gresec's phase 1 SAs after the phase 2 rekey: %+v, want %s the newest", g.IKEv1, fresh)
				}
				sp.checkKeysAgree(t, st2.Outbound.SPI)
			}
			t.Logf("phase 1 SA %s in use on both sides, phase 2 0x%08x/0x%08x kept; %v in all", fresh, spiIn, spiOut, time.Since(start).Round(time.Millisecond))
		})
	}
}
