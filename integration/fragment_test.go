package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/swan"
)

// TestStrongSwanFragmentation: IKE fragmentation (RFC 7383) with the real
// strongSwan, both roles. Both ends get a fragment size of 200 bytes, so
// each one's IKE_AUTH message goes in fragments: strongSwan
// (`fragmentation = force`, charon.fragment_size = 200) sends us SKF
// payloads that we reassemble, and we send it ours, which it must
// reassemble. The capture of the exchange must hold only datagrams within
// the size (no IP fragments), and tshark, given the keys from `gresec keys
// --wireshark`, must reassemble and decrypt both IKE_AUTH messages.
func TestStrongSwanFragmentation(t *testing.T) {
	for _, tool := range []string{"tshark", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: `sudo make test` installs it", tool)
		}
	}
	const size = 200
	for _, gresecInitiates := range []bool{true, false} {
		name := "strongswan-initiates"
		if gresecInitiates {
			name = "gresec-initiates"
		}
		t.Run(name, func(t *testing.T) {
			p := newSwanSites(t, "gresec-frag", "gresec-frag-"+newKey(t)[2:34])
			conf := swan.Conn{Local: "198.18.0.2", Remote: "198.18.0.1", PSK: swan.Key(p.psk), ConnExtra: "fragmentation = force"}
			ch, err := swan.Start(p.b.ns.Name, conf.SwanctlConf(), swan.Options{CharonConf: fmt.Sprintf("  fragment_size = %d", size)})
			if err != nil {
				t.Fatalf("charon: %v", err)
			}
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("charon log (redacted, last lines):\n%s", lastLines(ch.RedactedLog(), 60))
				}
				ch.Stop()
			})
			sp := &swanPair{pair: p, charon: ch}

			// Port 4500 too: charon at its default mobike = yes moves IKE there
			// from IKE_AUTH on when it initiates, NAT or not.
			pcap := filepath.Join(t.TempDir(), "ike.pcap")
			dump, err := p.b.ns.Start("tcpdump", "-n", "--immediate-mode", "-Z", "root", "-i", "veth-b", "-w", pcap, "udp port 500 or udp port 4500 or (ip[6:2] & 0x3fff != 0)")
			if err != nil {
				t.Fatal(err)
			}
			if !netns.WaitFor(5*time.Second, func() bool { return strings.Contains(dump.Out.String(), "listening on") }) {
				t.Fatalf("tcpdump did not start: %s", dump.Out)
			}
			psk := filepath.Join(p.dir, "a.psk")
			if err := os.WriteFile(psk, []byte(p.psk+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			p.writeGresecSide(gresecInitiates, fmt.Sprintf("psk_file = %q\n", psk), fmt.Sprintf("fragment_size = %d\n", size))
			p.start(p.a)
			if !gresecInitiates {
				if err := ch.Initiate("gre"); err != nil {
					t.Fatalf("charon initiate: %v", err)
				}
			}
			st, child := sp.installed(t, "")
			if child.Mode != "TRANSPORT" {
				t.Errorf("strongSwan installed %+v", child)
			}
			c := st.IKE.Counters
			if c.FragmentsSent < 2 || c.FragmentsReceived < 2 || c.FragmentsReassembled < 1 || c.Dropped != 0 {
				t.Errorf("gresec: %d fragments sent, %d received, %d messages reassembled, %d dropped (%v)",
					c.FragmentsSent, c.FragmentsReceived, c.FragmentsReassembled, c.Dropped, c.Drops)
			}
			log := ch.Log()
			for _, want := range []string{"splitting IKE message", "reassembled fragmented IKE message"} {
				if !strings.Contains(log, want) {
					t.Errorf("strongSwan's log lacks %q: it did not fragment, or did not reassemble ours", want)
				}
			}
			sp.checkKeysAgree(t, st.Outbound.SPI)

			dir := filepath.Join(t.TempDir(), "wireshark")
			if out, err := exec.Command(gresecBin, "keys", "--wireshark", dir, "-s", p.a.sock).CombinedOutput(); err != nil {
				t.Fatalf("gresec keys: %v\n%s", err, out)
			}
			dump.Stop(5 * time.Second)
			tshark := func(filter string, fields ...string) []string {
				t.Helper()
				args := []string{"-n", "-r", pcap, "-Y", filter, "-T", "fields", "-E", "separator=,"}
				for _, f := range fields {
					args = append(args, "-e", f)
				}
				cmd := exec.Command("tshark", args...)
				cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+dir)
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("tshark -Y %q: %v", filter, err)
				}
				return strings.Fields(string(out))
			}
			// Every datagram but IKE_SA_INIT's (never fragmented) within
			// the size; no IP fragments.
			for _, line := range tshark("ip && !(isakmp.exchangetype == 34)", "ip.len", "ip.flags.mf", "ip.frag_offset") {
				f := strings.Split(line, ",")
				if n, _ := strconv.Atoi(f[0]); n > size || f[1] == "1" || f[2] != "0" {
					t.Errorf("datagram len %s, more fragments %s, offset %s: over %d bytes or an IP fragment", f[0], f[1], f[2], size)
				}
			}
			// Fragments of IKE_AUTH both ways: source, number/total.
			frags := tshark("isakmp.exchangetype == 35 && isakmp.frag.total > 1", "ip.src", "isakmp.frag.number", "isakmp.frag.total")
			from := map[string]int{}
			for _, l := range frags {
				from[strings.Split(l, ",")[0]]++
			}
			if from["198.18.0.1"] < 2 || from["198.18.0.2"] < 2 {
				t.Errorf("IKE_AUTH fragments by sender %v, want >= 2 each way: %v", from, frags)
			}
			// Reassembled and decrypted: the identities inside IKE_AUTH, shown
			// on the fragment that completed each message.
			ids := strings.Join(tshark("isakmp.exchangetype == 35 && isakmp.frag.total > 1", "isakmp.id.data.ipv4_addr"), " ")
			t.Logf("IKE_AUTH fragments (source, number, total): %v; identities tshark decrypted: %s", frags, ids)
			for _, want := range []string{"198.18.0.1", "198.18.0.2"} {
				if !strings.Contains(ids, want) {
					t.Errorf("tshark found IDs %q in the reassembled IKE_AUTH messages, want %s", ids, want)
				}
			}
		})
	}
}
