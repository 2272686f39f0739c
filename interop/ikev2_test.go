package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/tunnel"
)

// TestScenario2StrongSwanKernel: gresec negotiates with strongSwan running
// in the guest, where charon installs real kernel XFRM SAs and policies
// (transport mode, GRE selectors, seed 000's proposals), and the guest
// kernel's GRE device talks to gresec through them. Replies prove the two
// sides derived the same keys; the kernel's SA counters prove ESP carried
// them.
func TestScenario2StrongSwanKernel(t *testing.T) {
	l := newLab(t)
	psk := l.guestStrongSwan()
	st := l.startGresecIKE(psk, true)
	sas := l.guestRun("swanctl --list-sas")
	for _, want := range []string{"ESTABLISHED", "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384", "INSTALLED, TRANSPORT", "ESP:AES_GCM_16-256"} {
		if !strings.Contains(sas, want) {
			t.Errorf("guest strongSwan lacks %q:\n%s", want, sas)
		}
	}
	l.guestGRE(st.MTU)
	l.pingAll(st.MTU)

	// The guest kernel's SA for gresec's outbound SPI decrypted the pings.
	l.checkGuestInbound(st, 8*pingCount)

	// strongSwan rekeys the CHILD_SA with PFS; traffic keeps flowing on the
	// new SAs.
	old := st.Outbound.SPI
	l.guestRun("swanctl --rekey --child gre")
	if !netns.WaitFor(20*time.Second, func() bool {
		s, err := l.status()
		if err == nil && s.Outbound != nil && s.Outbound.SPI != old {
			st = s
			return true
		}
		return false
	}) {
		t.Fatal("gresec did not follow strongSwan's CHILD_SA rekey")
	}
	l.pingFromHost(guestIn4.Addr(), 56)
	l.pingFromGuest(hostInner4.Addr(), 56)
	l.checkNoPlainGRE()
}

// TestScenario2GresecResponder: the same pair with the roles swapped:
// strongSwan in the guest initiates (`swanctl --initiate`) and gresec, with
// initiate = false, answers. strongSwan must mark itself the IKE initiator,
// both ends must agree on the SPIs the guest kernel holds, and the tunnel
// must carry MTU-sized IPv4 and IPv6 both ways.
func TestScenario2GresecResponder(t *testing.T) {
	l := newLab(t)
	psk := l.guestStrongSwan()
	st := l.startGresecIKE(psk, false)
	if st.IKE == nil || st.IKE.State == "established" || st.Outbound != nil {
		t.Fatalf("gresec with initiate = false negotiated on its own: %+v", st.IKE)
	}

	out := l.guestRun("swanctl --initiate --child gre --timeout 30")
	if !strings.Contains(out, "initiate completed successfully") {
		t.Fatalf("swanctl --initiate did not complete:\n%s", out)
	}
	st = l.waitEstablished(20 * time.Second)
	// The guest's GRE device only now: its first IPv6 router solicitation
	// would otherwise cross before strongSwan's policies exist.
	l.guestGRE(st.MTU)

	sw := l.guestSwanSAs()
	if !sw.established || !sw.weInitiated {
		t.Fatalf("guest strongSwan is not the established IKE initiator:\n%s", sw.raw)
	}
	if st.IKE.SPIi != sw.spiI || st.IKE.SPIr != sw.spiR {
		t.Errorf("IKE SPIs: gresec %s/%s, strongSwan %s/%s", st.IKE.SPIi, st.IKE.SPIr, sw.spiI, sw.spiR)
	}
	for _, want := range []string{"AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384", "INSTALLED, TRANSPORT, ESP:AES_GCM_16-256",
		"local  198.18.7.2/32[gre]", "remote 198.18.7.1/32[gre]"} {
		if !strings.Contains(sw.raw, want) {
			t.Errorf("guest strongSwan lacks %q:\n%s", want, sw.raw)
		}
	}
	child := l.onlyChild(st)
	if len(sw.children) != 1 || sw.children[0] != [2]uint32{child.out, child.in} {
		t.Errorf("CHILD_SA SPIs: gresec in/out 0x%08x/0x%08x, strongSwan in/out %08x", child.in, child.out, sw.children)
	}
	if got := l.guestSPIs(); !sameSet(got, child.in, child.out) {
		t.Errorf("guest kernel SAs %08x, want exactly gresec's 0x%08x and 0x%08x", keys(got), child.in, child.out)
	}

	t.Logf("strongSwan initiated IKE SA %s_i* %s_r; CHILD_SA gresec in/out 0x%08x/0x%08x", sw.spiI, sw.spiR, child.in, child.out)

	l.pingAll(st.MTU)
	l.checkGuestInbound(st, 8*pingCount)
	l.checkNoPlainGRE()
}

// guestStrongSwan configures and starts charon in the guest with seed 000's
// proposals, transport mode and GRE selectors, and returns a fresh PSK. It
// neither initiates nor waits for a peer: `start_action` is none.
func (l *lab) guestStrongSwan() string {
	l.t.Helper()
	return l.guestStrongSwanChild("mode = transport\n\t\t\t\tlocal_ts = dynamic[gre]\n\t\t\t\tremote_ts = dynamic[gre]")
}

// guestStrongSwanChild is guestStrongSwan with the child's mode and
// selector lines given.
func (l *lab) guestStrongSwanChild(child string) string {
	l.t.Helper()
	return l.guestStrongSwanConn(child, "")
}

// guestStrongSwanConn is guestStrongSwanChild with more connection lines
// (encap = yes). MOBIKE stays at strongSwan's default (yes): initiating,
// charon moves IKE to UDP 4500 after IKE_SA_INIT, and gresec follows.
func (l *lab) guestStrongSwanConn(child, conn string) string {
	t := l.t
	t.Helper()
	g, h := guestUnder[0].Addr(), hostUnder[0].Addr()
	psk := "gresec-guest-" + newKey(t)[2:30]
	l.guestRun(fmt.Sprintf(`set -e
mkdir -p /etc/swanctl/conf.d
cat > /etc/swanctl/conf.d/gre.conf <<'CONF'
connections {
	gre {
		version = 2
		local_addrs = %[1]s
		remote_addrs = %[2]s
		proposals = aes256gcm16-prfsha384-ecp384
		%[5]s
		local { auth = psk
			id = %[1]s }
		remote { auth = psk
			id = %[2]s }
		children {
			gre {
				%[4]s
				esp_proposals = aes256gcm16-ecp384
			}
		}
	}
}
secrets {
	ike-gre {
		id-1 = %[1]s
		id-2 = %[2]s
		secret = "%[3]s"
	}
}
CONF
# charon's own stderr is block-buffered into a file; a filelog flushes
# every line, so tests can read it while charon runs.
cat > /etc/strongswan.d/zz-gresec-log.conf <<'CONF'
charon {
	filelog {
		gresec {
			path = /tmp/charon.log
			time_format = %%T
			time_add_ms = yes
			flush_line = yes
			default = 1
		}
	}
}
CONF
(/usr/lib/ipsec/charon > /tmp/charon.stderr 2>&1 &)
for i in $(seq 50); do swanctl --stats >/dev/null 2>&1 && break; sleep 0.2; done
swanctl --load-all`, g, h, psk, child, conn))
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := l.g.Run("swanctl --list-sas 2>/dev/null; tail -n 80 /tmp/charon.log | sed 's/secret.*/secret [redacted]/'")
			t.Logf("guest strongSwan:\n%s", out)
		}
	})
	return psk
}

// startGresecIKE runs gresec with keying = "ikev2" and the PSK (in a 0600
// file); extra is appended to its [ike] section. As initiator it waits for
// the IKE SA and its CHILD_SA.
func (l *lab) startGresecIKE(psk string, initiate bool, extra ...string) tunnel.Status {
	t := l.t
	t.Helper()
	pskFile := filepath.Join(l.dir, "psk")
	if err := os.WriteFile(pskFile, []byte(psk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := l.startGresec("ikev2", nil, fmt.Sprintf("[ike]\ninitiate = %t\npsk_file = %q\n%s", initiate, pskFile, strings.Join(extra, "")))
	if initiate {
		st = l.waitEstablished(30 * time.Second)
	}
	return st
}

// waitEstablished waits until gresec reports an established IKE SA with an
// outbound ESP SA, and returns that status.
func (l *lab) waitEstablished(timeout time.Duration) tunnel.Status {
	l.t.Helper()
	var st tunnel.Status
	if !netns.WaitFor(timeout, func() bool {
		var err error
		st, err = l.status()
		return err == nil && st.IKE != nil && st.IKE.State == "established" && st.Outbound != nil && len(st.IKE.ChildSAs) > 0
	}) {
		l.t.Fatalf("IKE with the guest's strongSwan not established within %v: %+v", timeout, st.IKE)
	}
	return st
}

// checkGuestInbound checks that the guest kernel's SA for gresec's outbound
// SPI decrypted at least min packets without replay or ICV failures, and
// that no XFRM error counter of the guest moved.
func (l *lab) checkGuestInbound(st tunnel.Status, min uint64) {
	l.t.Helper()
	spi, err := parseSPI(st.Outbound.SPI)
	if err != nil {
		l.t.Fatal(err)
	}
	in, ok := l.guestSAs()[spi]
	if !ok || in.packets < min || in.replay != 0 || in.integrty != 0 {
		l.t.Errorf("guest kernel SA %s: %+v, want >= %d packets and no replay/ICV failures", st.Outbound.SPI, in, min)
	}
	if stats := l.guestRun("cat /proc/net/xfrm_stat"); !allZero(stats) && stats != l.xfrmBefore {
		l.t.Errorf("guest XFRM error counters moved:\n%s", stats)
	}
}

// checkNoPlainGRE checks that everything between the host and the guest
// crossed as ESP: the guest's policies require ESP for GRE, so a bare GRE
// packet on the wire means one side sent outside its SAs.
func (l *lab) checkNoPlainGRE() {
	l.t.Helper()
	if n := l.wire("gre_out") + l.wire("gre_in"); n != 0 {
		l.t.Errorf("%d plaintext GRE packets crossed the IKEv2 tunnel", n)
	}
}

// childSPIs is one CHILD_SA as gresec sees it.
type childSPIs struct{ in, out uint32 }

// onlyChild returns gresec's single CHILD_SA, failing the test if there is
// not exactly one.
func (l *lab) onlyChild(st tunnel.Status) childSPIs {
	l.t.Helper()
	c, err := oneChild(st)
	if err != nil {
		l.t.Fatal(err)
	}
	return c
}

func oneChild(st tunnel.Status) (childSPIs, error) {
	if st.IKE == nil || len(st.IKE.ChildSAs) != 1 {
		var n any = "no IKE SA"
		if st.IKE != nil {
			n = st.IKE.ChildSAs
		}
		return childSPIs{}, fmt.Errorf("gresec has %v, want exactly one CHILD_SA", n)
	}
	in, err := parseSPI(st.IKE.ChildSAs[0].SPIIn)
	if err != nil {
		return childSPIs{}, err
	}
	out, err := parseSPI(st.IKE.ChildSAs[0].SPIOut)
	return childSPIs{in, out}, err
}

func parseSPI(s string) (uint32, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 32)
	if err != nil {
		return 0, fmt.Errorf("SPI %q: %v", s, err)
	}
	return uint32(v), nil
}

// swanSAs is the guest's `swanctl --list-sas`, reduced to what tests check.
type swanSAs struct {
	raw         string
	established bool
	weInitiated bool   // strongSwan marks its own SPI with '*'
	spiI, spiR  string // 16 hex digits, as gresec's status prints them
	children    [][2]uint32
}

var (
	reSwanIKE = regexp.MustCompile(`(?m)^gre: #\d+, (\w+), IKEv2, ([0-9a-f]{16})_i(\*?) ([0-9a-f]{16})_r`)
	reSwanIn  = regexp.MustCompile(`(?m)^\s+in\s+([0-9a-f]{8}),`)
	reSwanOut = regexp.MustCompile(`(?m)^\s+out\s+([0-9a-f]{8}),`)
)

func (l *lab) guestSwanSAs() swanSAs {
	l.t.Helper()
	out := l.guestRun("swanctl --list-sas")
	s := swanSAs{raw: out}
	if m := reSwanIKE.FindStringSubmatch(out); m != nil {
		s.established = m[1] == "ESTABLISHED"
		s.spiI, s.weInitiated, s.spiR = m[2], m[3] == "*", m[4]
	}
	ins, outs := reSwanIn.FindAllStringSubmatch(out, -1), reSwanOut.FindAllStringSubmatch(out, -1)
	for i := range min(len(ins), len(outs)) {
		a, _ := strconv.ParseUint(ins[i][1], 16, 32)
		b, _ := strconv.ParseUint(outs[i][1], 16, 32)
		s.children = append(s.children, [2]uint32{uint32(a), uint32(b)})
	}
	return s
}

// guestSPIs returns the SPIs of the ESP SAs in the guest kernel (possibly
// none).
func (l *lab) guestSPIs() map[uint32]bool {
	l.t.Helper()
	out := l.guestRun("ip xfrm state")
	spis := map[uint32]bool{}
	for _, m := range reSASPIAll.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseUint(m[1], 16, 32)
		spis[uint32(v)] = true
	}
	return spis
}

var reSASPIAll = regexp.MustCompile(`proto esp spi 0x([0-9a-f]+)`)

func sameSet(got map[uint32]bool, want ...uint32) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if !got[w] {
			return false
		}
	}
	return true
}

func keys(m map[uint32]bool) []uint32 {
	var k []uint32
	for v := range m {
		k = append(k, v)
	}
	return k
}
