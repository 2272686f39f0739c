package interop

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// The tunnel shapes other than GRE in transport mode, statically keyed,
// against the Linux kernel in the guest: GRE under a tunnel-mode xfrm
// policy (what an IOS crypto map in tunnel mode over a GRE tunnel
// builds), an xfrm interface (a route-based VTI, as IOS `tunnel mode
// ipsec ipv4`), and an IP-in-IP tunnel under a transport-mode policy for
// protocols 4 and 41 (FreeBSD gif with setkey). Each: pings both ways,
// IPv4 and IPv6 inner, small and exactly filling the MTU with DF set,
// only ESP on the wire, the guest's SAs and gresec's agreeing.

// guestStates installs the guest's two SAs, in mode (and with extra
// flags), mirroring gresec's keys.
func (l *lab) guestStates(keys *staticKeys, mode, extra string) {
	l.t.Helper()
	g, h := guestUnder[0].Addr(), hostUnder[0].Addr()
	l.guestRun(fmt.Sprintf(`set -e
ip xfrm state add src %[2]s dst %[1]s proto esp spi 0x%[3]x mode %[7]s replay-window 32 %[8]s aead 'rfc4106(gcm(aes))' %[4]s 128
ip xfrm state add src %[1]s dst %[2]s proto esp spi 0x%[5]x mode %[7]s %[8]s aead 'rfc4106(gcm(aes))' %[6]s 128`,
		g, h, keys.spiOut, keys.keyOut, keys.spiIn, keys.keyIn, mode, extra))
}

// guestPolicies requires ESP in mode for the traffic sel selects, both
// ways, between the underlay addresses.
func (l *lab) guestPolicies(sel, mode string) {
	l.t.Helper()
	g, h := guestUnder[0].Addr(), hostUnder[0].Addr()
	l.guestRun(fmt.Sprintf(`set -e
ip xfrm policy add %[3]s dir out tmpl src %[1]s dst %[2]s proto esp mode %[4]s
ip xfrm policy add %[5]s dir in tmpl src %[2]s dst %[1]s proto esp mode %[4]s`,
		g, h, fmt.Sprintf(sel, g, h), mode, fmt.Sprintf(sel, h, g)))
}

func shapeKeys(t *testing.T) *staticKeys {
	return &staticKeys{spiOut: 0x3001, spiIn: 0x3002, keyOut: newKey(t), keyIn: newKey(t)}
}

// TestStaticTunnelModeGRE: gresec's mode = "tunnel", encap = "gre"
// against the kernel's GRE device under a tunnel-mode xfrm policy for
// protocol 47 between the underlay addresses.
func TestStaticTunnelModeGRE(t *testing.T) {
	l := newLab(t)
	l.mode, l.encap = "tunnel", "gre"
	keys := shapeKeys(t)
	l.guestStates(keys, "tunnel", "")
	l.guestPolicies("src %s dst %s proto gre", "tunnel")
	// 1500 - 20 (IP) - 8 - 8 - 16 (ESP) - 2 - 20 (tunnel mode's IP) - 4 (GRE).
	const mtu = 1422
	st := l.startGresec("static", keys)
	if st.MTU != mtu || st.Mode != "tunnel" || st.Encap != "gre" {
		t.Fatalf("gresec MTU %d, mode %q, encap %q; want %d, tunnel, gre", st.MTU, st.Mode, st.Encap, mtu)
	}
	l.guestGRE(mtu)
	l.pingAll(mtu)
	l.checkStaticCounters(keys)
}

// TestStaticVTI: gresec's mode = "tunnel", encap = "none" against an
// xfrm interface (if_id 42) whose SAs carry IPv4 and IPv6 (flag
// af-unspec) under policies for 0.0.0.0/0 and ::/0, as strongSwan
// installs a route-based tunnel.
func TestStaticVTI(t *testing.T) {
	l := newLab(t)
	l.mode, l.encap = "tunnel", "none"
	keys := shapeKeys(t)
	l.guestStates(keys, "tunnel", "flag af-unspec if_id 42")
	g, h := guestUnder[0].Addr(), hostUnder[0].Addr()
	for _, sel := range []string{"0.0.0.0/0", "::/0"} {
		l.guestRun(fmt.Sprintf(`set -e
ip xfrm policy add src %[3]s dst %[3]s dir out tmpl src %[1]s dst %[2]s proto esp mode tunnel if_id 42
ip xfrm policy add src %[3]s dst %[3]s dir in tmpl src %[2]s dst %[1]s proto esp mode tunnel if_id 42`, g, h, sel))
	}
	// 1500 - 20 (IP) - 8 - 8 - 16 (ESP) - 2.
	const mtu = 1446
	st := l.startGresec("static", keys)
	if st.MTU != mtu || st.Mode != "tunnel" || st.Encap != "none" {
		t.Fatalf("gresec MTU %d, mode %q, encap %q; want %d, tunnel, none", st.MTU, st.Mode, st.Encap, mtu)
	}
	l.guestRun(fmt.Sprintf(`set -e
ip link add xfrm1 type xfrm dev eth0 if_id 42
ip addr add %s dev xfrm1
ip -6 addr add %s dev xfrm1 nodad
ip link set xfrm1 mtu %d up`, guestIn4, guestIn6, mtu))
	l.pingAll(mtu)
	l.checkStaticCounters(keys)
}

// TestStaticIPIPTransport: gresec's mode = "transport", encap = "ipip"
// against a kernel sit tunnel in mode any (IPv4 in IPv4, protocol 4, and
// IPv6 in IPv4, protocol 41, as a FreeBSD gif carries both) under
// transport-mode policies for protocols 4 and 41.
func TestStaticIPIPTransport(t *testing.T) {
	l := newLab(t)
	l.mode, l.encap = "transport", "ipip"
	keys := shapeKeys(t)
	// gresec's IPv6 router solicitation and MLD reports, sent when its
	// interface comes up and before the guest's sit1 exists, would go to
	// xfrm4_tunnel (the guest loads it for IPComp's IP-in-IP SAs), which
	// counts each as XfrmInNoStates. Without it they are dropped as for
	// any protocol no tunnel claims, and the counters stay exact.
	l.guestRun("modprobe -r xfrm4_tunnel")
	l.guestStates(keys, "transport", "")
	l.guestPolicies("src %s dst %s proto 4", "transport")
	l.guestPolicies("src %s dst %s proto 41", "transport")
	const mtu = 1446
	st := l.startGresec("static", keys)
	if st.MTU != mtu || st.Mode != "transport" || st.Encap != "ipip" {
		t.Fatalf("gresec MTU %d, mode %q, encap %q; want %d, transport, ipip", st.MTU, st.Mode, st.Encap, mtu)
	}
	l.guestRun(fmt.Sprintf(`set -e
ip link add sit1 type sit local %s remote %s ttl 64 mode any
ip addr add %s dev sit1
ip -6 addr add %s dev sit1 nodad
ip link set sit1 mtu %d up`, guestUnder[0].Addr(), hostUnder[0].Addr(), guestIn4, guestIn6, mtu))
	l.pingAll(mtu)
	l.checkStaticCounters(keys)
}

// TestPeerConfigShapesLinux: what `gresec peer-config --for linux`
// writes for each shape, run as it is in the guest (the underlay device
// filled in), makes a working tunnel: the SAs and policies before gresec
// starts, the device after, then the same pings and counters as above.
// Only the MSS clamp lines are left out.
func TestPeerConfigShapesLinux(t *testing.T) {
	for _, tc := range []struct{ mode, encap string }{{"tunnel", "gre"}, {"tunnel", "none"}, {"transport", "ipip"}} {
		t.Run(tc.mode+"+"+tc.encap, func(t *testing.T) {
			l := newLab(t)
			l.mode, l.encap = tc.mode, tc.encap
			keys := shapeKeys(t)
			l.writeGresecConfig("static", keys)
			out, err := exec.Command(gresecBin, "peer-config", "--for", "linux", "--include-secret", "-c", l.cfg).CombinedOutput()
			if err != nil {
				t.Fatalf("peer-config: %v\n%s", err, out)
			}
			text := string(out)
			i := strings.Index(text, "==== commands (as root) ====")
			if i < 0 {
				t.Fatalf("no commands section:\n%s", text)
			}
			_, script, _ := strings.Cut(text[i:], "\n") // after the section's title
			script = strings.ReplaceAll(script, "<underlay-device>", "eth0")
			// The SAs and policies, then (after the blank line) the device.
			sas, device, ok := strings.Cut(script, "\n\n")
			if !ok || !strings.Contains(sas, "ip xfrm state add") || !strings.Contains(device, "ip link set") {
				t.Fatalf("unexpected layout:\n%s", script)
			}
			// The MSS clamp that follows is for forwarded traffic (and the
			// guest has no nft): not needed for pings from the guest itself.
			device, _, _ = strings.Cut(device, "# TCP MSS clamp")
			if tc.encap == "ipip" {
				l.guestRun("modprobe -r xfrm4_tunnel") // see TestStaticIPIPTransport
			}
			l.guestRun("set -e\n" + sas)
			st := l.runGresec()
			l.guestRun("set -e\n" + device)
			l.pingAll(st.MTU)
			l.checkStaticCounters(keys)
		})
	}
}

// TestStrongSwanVTIKernel: gresec's VTI (mode = "tunnel", encap =
// "none", keying = "ikev2", selectors 0.0.0.0/0 and ::/0) against
// strongSwan in the guest installing a route-based CHILD_SA (if_id 42)
// into the kernel, whose xfrm interface carries IPv4 and IPv6: pings both
// ways, counters exact.
func TestStrongSwanVTIKernel(t *testing.T) {
	l := newLab(t)
	l.mode, l.encap = "tunnel", "none"
	psk := l.guestStrongSwanChild("mode = tunnel\n\t\t\t\tlocal_ts = 0.0.0.0/0,::/0\n\t\t\t\tremote_ts = 0.0.0.0/0,::/0\n\t\t\t\tif_id_in = 42\n\t\t\t\tif_id_out = 42")
	st := l.startGresecIKE(psk, true)
	sas := l.guestRun("swanctl --list-sas")
	for _, want := range []string{"ESTABLISHED", "INSTALLED, TUNNEL", "(-|0x0000002a)"} {
		if !strings.Contains(sas, want) {
			t.Errorf("guest strongSwan lacks %q:\n%s", want, sas)
		}
	}
	if log := l.guestRun("grep -c 'TS 0.0.0.0/0 ::/0 === 0.0.0.0/0 ::/0' /tmp/charon.log || true"); strings.TrimSpace(log) != "1" {
		t.Errorf("charon did not log one CHILD_SA with both families' selectors (%q)", log)
	}
	l.guestRun(fmt.Sprintf(`set -e
ip link add xfrm1 type xfrm dev eth0 if_id 42
ip addr add %s dev xfrm1
ip -6 addr add %s dev xfrm1 nodad
ip link set xfrm1 mtu %d up`, guestIn4, guestIn6, st.MTU))
	l.pingAll(st.MTU)
	l.checkGuestInbound(st, 8*pingCount)
}
