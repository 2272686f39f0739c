package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
)

// optInCount is the N of an opt-in measurement, from the environment
// variable env (1..1000); the test is skipped without it.
func optInCount(t *testing.T, env, doc string) int {
	t.Helper()
	n, _ := strconv.Atoi(os.Getenv(env))
	if n <= 0 {
		t.Skipf("SKIPPED: a measurement, opt-in: %s=N (%s)", env, doc)
	}
	if n > 1000 {
		t.Fatalf("%s=%d: at most 1000", env, n)
	}
	nstest.RequireRoot(t, "network namespaces, TUN, raw sockets")
	return n
}

// scaleLab is a hub namespace (scaleHubAddr/16) and a peers namespace with
// n local addresses on one link, and two tunnel directories: the hub's n
// IKEv2 responder tunnels and the peers' n initiator tunnels, tunnel k
// between scalePeerAddr(k) and the hub with a PSK of its own (keys[k]).
type scaleLab struct {
	work              string
	hub, peers        *netns.NS
	hubDir, peerDir   string
	hubSock, peerSock string
	names, keys       []string
}

const scaleHubAddr = "198.18.0.1"

func scalePeerAddr(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(1 + k/250), byte(1 + k%250)})
}

// scaleInner is tunnel k's inner address on the hub (side 0) or the peer.
func scaleInner(k, side int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 19, byte(k >> 7), byte((k&127)*2 + side)})
}

func newScaleLab(t *testing.T, n int, prefix string) *scaleLab {
	t.Helper()
	l := &scaleLab{work: t.TempDir()}
	var sites [2]*netns.NS
	for i := range sites {
		ns, err := netns.Create(netns.Unique(prefix))
		if err != nil {
			t.Fatal(err)
		}
		sites[i] = ns
		t.Cleanup(func() { ns.Delete() })
	}
	l.hub, l.peers = sites[0], sites[1]
	if err := netns.Link(l.hub, "veth-h", []netip.Prefix{netip.MustParsePrefix(scaleHubAddr + "/16")}, l.peers, "veth-p", nil); err != nil {
		t.Fatal(err)
	}
	l.hubDir, l.peerDir = filepath.Join(l.work, "hub"), filepath.Join(l.work, "peers")
	l.hubSock, l.peerSock = filepath.Join(l.work, "hub.sock"), filepath.Join(l.work, "peers.sock")
	for _, d := range []string{l.hubDir, l.peerDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	l.write(t, filepath.Join(l.hubDir, "gresec.toml"), fmt.Sprintf("[control]\nsocket = %q\n", l.hubSock))
	l.write(t, filepath.Join(l.peerDir, "gresec.toml"), fmt.Sprintf("[control]\nsocket = %q\n", l.peerSock))
	var addrs []byte
	for k := 0; k < n; k++ {
		addrs = fmt.Appendf(addrs, "addr add %s/16 dev veth-p\n", scalePeerAddr(k))
		name := fmt.Sprintf("t%03d", k)
		key := "gresec-scale-test-" + newKey(t)[2:34]
		l.names, l.keys = append(l.names, name), append(l.keys, key)
		psk := filepath.Join(l.work, name+".psk")
		l.write(t, psk, key+"\n")
		l.write(t, filepath.Join(l.hubDir, name+".toml"), fmt.Sprintf("[tunnel]\ninterface = \"h%03d\"\nlocal = %q\nremote = %q\naddresses = [\"%s/31\"]\n[ipsec]\nkeying = \"ikev2\"\n[ike]\ninitiate = false\npsk_file = %q\n",
			k, scaleHubAddr, scalePeerAddr(k), scaleInner(k, 0), psk))
		l.write(t, filepath.Join(l.peerDir, name+".toml"), fmt.Sprintf("[tunnel]\ninterface = \"p%03d\"\nlocal = %q\nremote = %q\naddresses = [\"%s/31\"]\n[ipsec]\nkeying = \"ikev2\"\n[ike]\ninitiate = true\npsk_file = %q\n",
			k, scalePeerAddr(k), scaleHubAddr, scaleInner(k, 1), psk))
	}
	batch := filepath.Join(l.work, "addrs.batch")
	l.write(t, batch, string(addrs))
	if out, err := l.peers.Run("ip", "-batch", batch); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return l
}

func (l *scaleLab) write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}
