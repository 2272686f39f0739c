package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
)

// TestScenario2StrongSwanKernel: gresec negotiates with strongSwan running
// in the guest, where charon installs real kernel XFRM SAs and policies
// (transport mode, GRE selectors, seed 000's proposals), and the guest
// kernel's GRE device talks to gresec through them. Replies prove the two
// sides derived the same keys; the kernel's SA counters prove ESP carried
// them.
func TestScenario2StrongSwanKernel(t *testing.T) {
	l := newLab(t)
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
		mobike = no
		local { auth = psk
			id = %[1]s }
		remote { auth = psk
			id = %[2]s }
		children {
			gre {
				mode = transport
				local_ts = dynamic[gre]
				remote_ts = dynamic[gre]
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
(/usr/lib/ipsec/charon > /tmp/charon.log 2>&1 &)
for i in $(seq 50); do swanctl --stats >/dev/null 2>&1 && break; sleep 0.2; done
swanctl --load-all`, g, h, psk))
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := l.g.Run("swanctl --list-sas; tail -40 /tmp/charon.log | sed 's/secret.*/secret [redacted]/'")
			t.Logf("guest strongSwan:\n%s", out)
		}
	})

	pskFile := filepath.Join(l.dir, "psk")
	if err := os.WriteFile(pskFile, []byte(psk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := l.startGresec("ikev2", nil, fmt.Sprintf("[ike]\ninitiate = true\npsk_file = %q\n", pskFile))
	if !netns.WaitFor(30*time.Second, func() bool {
		var err error
		st, err = l.status()
		return err == nil && st.IKE != nil && st.IKE.State == "established" && st.Outbound != nil
	}) {
		t.Fatalf("IKE with the guest's strongSwan not established within 30 s: %+v", st.IKE)
	}
	sas := l.guestRun("swanctl --list-sas")
	for _, want := range []string{"ESTABLISHED", "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384", "INSTALLED, TRANSPORT", "ESP:AES_GCM_16-256"} {
		if !strings.Contains(sas, want) {
			t.Errorf("guest strongSwan lacks %q:\n%s", want, sas)
		}
	}
	l.guestGRE(st.MTU)
	l.pingAll(st.MTU)

	// The guest kernel's SA for gresec's outbound SPI decrypted the pings.
	var spi uint32
	fmt.Sscanf(st.Outbound.SPI, "0x%x", &spi)
	in, ok := l.guestSAs()[spi]
	if !ok || in.packets < 8*pingCount || in.replay != 0 || in.integrty != 0 {
		t.Errorf("guest kernel SA %s: %+v, want >= %d packets and no replay/ICV failures", st.Outbound.SPI, in, 8*pingCount)
	}
	if stats := l.guestRun("cat /proc/net/xfrm_stat"); !allZero(stats) {
		t.Errorf("guest XFRM error counters moved:\n%s", stats)
	}

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
}
