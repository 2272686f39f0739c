package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/tunnel"
)

// IKEv1 against libreswan's pluto in the guest, with the guest kernel's
// XFRM as the data plane: Main Mode + Quick Mode with a PSK, AES-128-CBC
// + HMAC-SHA1 + MODP 2048 for both phases (PFS), transport mode for GRE
// only (protocol 47 host to host), pings over the kernel's GRE device
// through the SAs pluto installed. Both roles.
//
// The image unpacks libreswan into /opt/libreswan (its package conflicts
// with strongSwan's, build-image.sh); /usr/libexec/ipsec links to its
// helpers. pluto is run directly, with every path under /tmp/libreswan:
// /usr/sbin/ipsec is strongSwan's.

// libreswanProposal is the seeds' Cisco "AES SHA 14" in gresec's syntax.
const libreswanProposal = "aes128-sha1-modp2048"

const libreswanDir = "/tmp/libreswan"

// guestLibreswan writes pluto's configuration and secrets, starts pluto
// and loads the connection "gre"; it returns the PSK. Its log is
// /tmp/pluto.log in the guest; pluto ends by its PID at the end of the test.
func (l *lab) guestLibreswan() string {
	t := l.t
	t.Helper()
	g, h := guestUnder[0].Addr(), hostUnder[0].Addr()
	psk := "gresec-libreswan-" + newKey(t)[2:30]
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := l.g.Run(fmt.Sprintf("/usr/libexec/ipsec/whack --ctlsocket %s/run/pluto.ctl --status | grep -v '^000 *$' | tail -n 40; tail -n 60 /tmp/pluto.log | grep -v PSK", libreswanDir))
			t.Logf("guest libreswan:\n%s", out)
		}
		if out, err := l.g.Run(fmt.Sprintf(`kill "$(cat %s/run/pluto.pid)"`, libreswanDir)); err != nil {
			t.Logf("stopping pluto: %v: %s", err, out)
		}
	})
	l.guestRun(fmt.Sprintf(`set -e
d=%[4]s
mkdir -p $d/nss $d/run
certutil -N -d sql:$d/nss --empty-password
cat > $d/ipsec.conf <<'CONF'
config setup
	logfile=/tmp/pluto.log
	logtime=yes
	plutodebug=none
	dumpdir=%[4]s/run
	# libreswan 4 drops IKEv1 unless told otherwise.
	ikev1-policy=accept
	listen=%[1]s

conn gre
	keyexchange=ike
	ikev2=no
	authby=secret
	type=transport
	left=%[1]s
	right=%[2]s
	leftprotoport=gre
	rightprotoport=gre
	ike=aes128-sha1;modp2048
	esp=aes128-sha1
	pfs=yes
	leftupdown=%%disabled
	auto=add
CONF
cat > $d/ipsec.secrets <<'CONF'
%[1]s %[2]s : PSK "%[3]s"
CONF
chmod 600 $d/ipsec.secrets
/usr/libexec/ipsec/pluto --config $d/ipsec.conf --secretsfile $d/ipsec.secrets \
	--nssdir $d/nss --rundir $d/run --logfile /tmp/pluto.log
# pluto loads the auto=add connections of --config itself once up.
for i in $(seq 150); do
	/usr/libexec/ipsec/whack --ctlsocket $d/run/pluto.ctl --status 2>/dev/null | grep -q 'connections: loaded 1,' && exit 0
	sleep 0.2
done
echo "pluto did not load the connection within 30 s"; exit 1`, g, h, psk, libreswanDir))
	return psk
}

// whack runs pluto's control client in the guest.
func (l *lab) whack(args string) string {
	l.t.Helper()
	return l.guestRun(fmt.Sprintf("/usr/libexec/ipsec/whack --ctlsocket %s/run/pluto.ctl %s", libreswanDir, args))
}

// startGresecIKEv1 runs gresec with keying = "ikev1" and the PSK in a
// 0600 file.
func (l *lab) startGresecIKEv1(psk string, initiate bool) tunnel.Status {
	l.t.Helper()
	pskFile := filepath.Join(l.dir, "psk")
	if err := os.WriteFile(pskFile, []byte(psk+"\n"), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return l.startGresec("ikev1", nil, fmt.Sprintf("[ike]\ninitiate = %t\npsk_file = %q\nproposals = [%q]\nesp_proposals = [%q]\nretransmit_timeout = \"2s\"\n",
		initiate, pskFile, libreswanProposal, libreswanProposal))
}

// TestLibreswanLoadsGREConn: the guest's pluto starts from the harness's
// files and holds the IKEv1 transport-mode GRE connection as written.
func TestLibreswanLoadsGREConn(t *testing.T) {
	l := newLab(t)
	l.guestLibreswan()
	st := l.whack("--status")
	for _, want := range []string{
		// Host to host, GRE only.
		`"gre": 198.18.7.2/32:GRE/0-65535===198.18.7.2...198.18.7.1===198.18.7.1/32:GRE/0-65535;`,
		// IKEv1, PSK, ESP with PFS; no TUNNEL: transport mode.
		`"gre":   policy: IKEv1+PSK+ENCRYPT+PFS+`,
		`our id=198.18.7.2; their idtype: ID_IPV4_ADDR; their id=198.18.7.1`,
	} {
		if !strings.Contains(st, want) {
			t.Errorf("pluto's status lacks %q:\n%s", want, st)
		}
	}
	if strings.Contains(st, "TUNNEL") {
		t.Errorf("pluto's connection is in tunnel mode:\n%s", st)
	}
}

func TestLibreswanIKEv1(t *testing.T) {
	for _, tc := range []struct {
		name            string
		gresecInitiates bool
	}{{"gresec-initiates", true}, {"libreswan-initiates", false}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			psk := l.guestLibreswan()
			l.startGresecIKEv1(psk, tc.gresecInitiates)
			if !tc.gresecInitiates {
				// --asynchronous: whack returns at once; the wait below is ours.
				l.whack("--name gre --initiate --asynchronous")
			}
			var st tunnel.Status
			if !netns.WaitFor(60*time.Second, func() bool {
				var err error
				st, err = l.status()
				return err == nil && st.Outbound != nil && st.IKEv1 != nil && len(st.IKEv1.Phase2) > 0
			}) {
				t.Fatalf("no phase 2 SA with libreswan within 60 s: %+v", st.IKEv1)
			}
			if n := len(st.IKEv1.Phase1); n == 0 || st.IKEv1.Phase1[0].State != "QM_IDLE" || st.IKEv1.Phase1[0].Initiator != tc.gresecInitiates {
				t.Errorf("gresec's ISAKMP SAs: %+v, want one QM_IDLE with initiator = %v", st.IKEv1.Phase1, tc.gresecInitiates)
			}
			if p2 := st.IKEv1.Phase2[0]; p2.Mode != "Transport" {
				t.Errorf("gresec's phase 2 SA: %+v, want transport mode", p2)
			}
			// pluto's view: Main Mode and Quick Mode completed in the role
			// it had, and the IPsec SA in transport mode with the suite.
			main, quick := "STATE_MAIN_R3 (IKE SA established)", "STATE_QUICK_R2 (IPsec SA established)"
			if !tc.gresecInitiates {
				main, quick = "STATE_MAIN_I4 (IKE SA established)", "STATE_QUICK_I2 (IPsec SA established)"
			}
			status := l.whack("--status")
			for _, want := range []string{main, quick} {
				if !strings.Contains(status, want) {
					t.Errorf("pluto's status lacks %q:\n%s", want, status)
				}
			}
			spi, err := parseSPI(st.Outbound.SPI)
			if err != nil {
				t.Fatal(err)
			}
			// pluto logs its inbound SPI (gresec's outbound) after "<0x".
			if est := l.guestRun("grep 'IPsec SA established' /tmp/pluto.log || true"); !strings.Contains(est, "IPsec SA established transport mode") ||
				!strings.Contains(est, "xfrm=AES_CBC_128-HMAC_SHA1_96") || !strings.Contains(est, fmt.Sprintf("<0x%08x", spi)) {
				t.Errorf("pluto did not log a transport-mode AES_CBC_128-HMAC_SHA1_96 SA with inbound SPI %#08x:\n%s", spi, est)
			}
			l.guestGRE(st.MTU)
			l.pingAll(st.MTU)
			l.checkGuestInbound(l.mustStatus(), 8*pingCount)
			if gre := l.wire("gre_in") + l.wire("gre_out"); gre != 0 {
				t.Errorf("%d GRE packets in the clear on the host's wire", gre)
			}
			if strings.Contains(l.gresec.Out.String(), psk) {
				t.Error("gresec's log holds the PSK")
			}
		})
	}
}
