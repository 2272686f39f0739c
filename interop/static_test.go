package interop

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// TestScenario1StaticKeys: gresec with keying = "static" against the Linux
// kernel's GRE protected by its own XFRM ESP (transport mode,
// rfc4106(gcm(aes)), 36-byte keys), with the SPIs and keys mirrored. The
// guest's inbound policy requires ESP for GRE, so a plaintext GRE packet from
// gresec would be dropped rather than answered: replies prove encryption
// the kernel accepts, and the kernel's SA counters prove which SAs carried it.
func TestScenario1StaticKeys(t *testing.T) {
	l := newLab(t)
	keys := &staticKeys{spiOut: 0x1001, spiIn: 0x1002, keyOut: newKey(t), keyIn: newKey(t)}
	// Order matters for exact counters: the guest's SAs and policies exist
	// before gresec starts, and gresec runs before the guest's gre1 comes
	// up, so not one packet (not even the IPv6 router solicitation either
	// side sends when its interface comes up) crosses outside the SAs or
	// reaches a peer that is not listening yet.
	l.guestESP(keys, keys.keyIn)
	// DESIGN.md §2: 1500 - 20 - 8 - 8 - 16 - 2 - 4.
	const mtu = 1442
	st := l.startGresec("static", keys)
	l.guestGRE(mtu)
	if st.Protocol != "esp" {
		t.Fatalf("gresec status protocol %q, want esp", st.Protocol)
	}
	if st.MTU != mtu {
		t.Fatalf("gresec MTU %d for ESP over IPv4/1500, want %d", st.MTU, mtu)
	}

	l.pingAll(st.MTU)
	l.checkStaticCounters(keys)
}

// checkStaticCounters checks after pingAll that ESP, never bare GRE,
// crossed both ways, that the guest's SAs carried it without replay,
// ICV or XFRM errors, and that gresec's SAs agree.
func (l *lab) checkStaticCounters(keys *staticKeys) {
	t := l.t
	t.Helper()
	g, h := guestUnder[0].Addr(), hostUnder[0].Addr()
	// On the wire: ESP both ways, never a bare GRE packet.
	const min = 8 * pingCount
	if out, in := l.wire("esp_out"), l.wire("esp_in"); out < min || in < min {
		t.Errorf("host sent %d and received %d ESP packets, want >= %d each", out, in, min)
	}
	if n := l.wire("gre_out") + l.wire("gre_in"); n != 0 {
		t.Errorf("%d plaintext GRE packets crossed a keying = static tunnel", n)
	}

	// The guest kernel's SAs moved: its inbound SA (gresec's spi_out)
	// decrypted what gresec sent, with no replay or ICV failures, and its
	// outbound SA (gresec's spi_in) carried the replies.
	sas := l.guestSAs()
	in, ok := sas[keys.spiOut]
	if !ok || in.src != h.String() || in.dst != g.String() {
		t.Fatalf("guest has no inbound SA 0x%x %s -> %s: %+v", keys.spiOut, h, g, sas)
	}
	out, ok := sas[keys.spiIn]
	if !ok || out.src != g.String() || out.dst != h.String() {
		t.Fatalf("guest has no outbound SA 0x%x %s -> %s: %+v", keys.spiIn, g, h, sas)
	}
	if in.packets < min || out.packets < min {
		t.Errorf("guest SA packet counters: inbound 0x%x %d, outbound 0x%x %d; want >= %d each",
			keys.spiOut, in.packets, keys.spiIn, out.packets, min)
	}
	if in.replay != 0 || in.integrty != 0 {
		t.Errorf("guest inbound SA dropped %d replays and %d ICV failures", in.replay, in.integrty)
	}
	if stats := l.guestRun("cat /proc/net/xfrm_stat"); !allZero(stats) {
		t.Errorf("guest XFRM error counters moved:\n%s", stats)
	}

	// gresec's view mirrors the guest's: its outbound SA sent at least as
	// many packets as the guest decrypted, and its inbound SA accepted the
	// guest's without drops.
	st := l.mustStatus()
	if st.Outbound == nil || st.Outbound.Packets < in.packets {
		t.Errorf("gresec outbound SA %+v, want >= %d packets (what the guest decrypted)", st.Outbound, in.packets)
	}
	var accepted uint64
	for _, sa := range st.Inbound {
		accepted += sa.Packets
		for why, n := range sa.Drops {
			if n != 0 {
				t.Errorf("gresec inbound SA %s dropped %d packets (%s)", sa.SPI, n, why)
			}
		}
	}
	if accepted < out.packets {
		t.Errorf("gresec inbound SAs accepted %d packets, the guest sent %d", accepted, out.packets)
	}
}

// allZero reports whether every counter in /proc/net/xfrm_stat is 0.
func allZero(stats string) bool {
	for _, line := range strings.Split(strings.TrimSpace(stats), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[1] != "0" {
			return false
		}
	}
	return true
}

// TestScenario1WrongKeyDropped: the same setup, except that the guest's
// outbound SA uses a key gresec does not have. gresec must authenticate the
// kernel's packets before delivering them: nothing gets through and every
// packet counts as an ICV (auth) drop. This is the check that the passing
// scenario is not passing for the wrong reason.
func TestScenario1WrongKeyDropped(t *testing.T) {
	l := newLab(t)
	keys := &staticKeys{spiOut: 0x2001, spiIn: 0x2002, keyOut: newKey(t), keyIn: newKey(t)}
	l.guestESP(keys, newKey(t))
	l.startGresec("static", keys)
	l.guestGRE(1442)

	out, _ := l.g.Run("ping -c 3 -i 0.2 -W 2 " + hostInner4.Addr().String())
	if m := pingStats.FindStringSubmatch(out); m == nil || m[1] != "3" || m[2] != "0" {
		t.Fatalf("guest pinged across with a key gresec does not have; want 3 sent, 0 received:\n%s", out)
	}
	sas := l.guestSAs()
	sent := sas[keys.spiIn].packets
	if sent < 3 {
		t.Fatalf("guest outbound SA carried %d packets, want >= 3", sent)
	}
	st := l.mustStatus()
	if st.Inner.RxPackets != 0 {
		t.Errorf("gresec delivered %d inner packets sealed with the wrong key", st.Inner.RxPackets)
	}
	var auth uint64
	for _, sa := range st.Inbound {
		auth += sa.Drops["auth"]
	}
	if auth < sent {
		t.Errorf("gresec counted %d auth drops for %d packets under the wrong key (inbound %+v)", auth, sent, st.Inbound)
	}
}

// guestESP installs the guest's SAs, mirroring gresec's keys (the guest's
// inbound SA is gresec's outbound one), and policies that require ESP for
// all GRE between the two underlay addresses. outKey is the key of the
// guest's outbound SA: keys.keyIn, unless a test wants a mismatch.
func (l *lab) guestESP(keys *staticKeys, outKey string) {
	l.t.Helper()
	g, h := guestUnder[0].Addr(), hostUnder[0].Addr()
	l.guestRun(fmt.Sprintf(`set -e
ip xfrm state add src %[2]s dst %[1]s proto esp spi 0x%[3]x mode transport replay-window 32 aead 'rfc4106(gcm(aes))' %[4]s 128
ip xfrm state add src %[1]s dst %[2]s proto esp spi 0x%[5]x mode transport aead 'rfc4106(gcm(aes))' %[6]s 128
ip xfrm policy add src %[1]s dst %[2]s proto gre dir out tmpl src %[1]s dst %[2]s proto esp mode transport
ip xfrm policy add src %[2]s dst %[1]s proto gre dir in tmpl src %[2]s dst %[1]s proto esp mode transport`,
		g, h, keys.spiOut, keys.keyOut, keys.spiIn, outKey))
}

// xfrmTransform is one ESP transform as gresec's [static] and the guest's
// `ip xfrm state` spell it.
type xfrmTransform struct {
	esp     string // gresec's static.esp
	encLen  int    // bytes of key_out/key_in (with the salt for an AEAD)
	authLen int    // bytes of auth_key_out/auth_key_in (AES-CBC)
	// algo is the algorithm clause of `ip xfrm state add` for a key and
	// an HMAC key (hex with 0x).
	algo func(key, auth string) string
	mtu  int // docs/configuration.md: IPv4 over 1500, GRE 4
}

func cbcHMAC(hash string, bits int) func(key, auth string) string {
	return func(key, auth string) string {
		return fmt.Sprintf("enc 'cbc(aes)' %s auth-trunc 'hmac(%s)' %s %d", key, hash, auth, bits)
	}
}

func aead(name string) func(key, auth string) string {
	return func(key, _ string) string { return fmt.Sprintf("aead '%s' %s 128", name, key) }
}

// TestStaticTransforms: gresec against the Linux kernel's own ESP with
// static keys, one scenario per transform family the kernel names
// differently: AES-CBC with HMAC-SHA2-256-128 and HMAC-SHA1-96 (`enc
// 'cbc(aes)' ... auth-trunc 'hmac(...)'`), ChaCha20-Poly1305
// (`rfc7539esp(chacha20,poly1305)`), AES-CBC with HMAC-SHA2-512-256 and
// ESN (the kernel's authencesn). Pings both ways, IPv4 and IPv6 inside,
// small and exactly the transform's MTU with DF set, through the kernel's
// GRE: the kernel and gresec must agree on keys, ICV, padding and MTU.
func TestStaticTransforms(t *testing.T) {
	for _, tt := range []struct {
		xfrmTransform
		esn bool
	}{
		{xfrmTransform{"aes256-sha256", 32, 32, cbcHMAC("sha256", 128), 1434}, false},
		{xfrmTransform{"aes128-sha1", 16, 20, cbcHMAC("sha1", 96), 1434}, false},
		{xfrmTransform{"chacha20poly1305", 36, 0, aead("rfc7539esp(chacha20,poly1305)"), 1442}, false},
		{xfrmTransform{"aes256-sha512", 32, 64, cbcHMAC("sha512", 256), 1418}, true},
	} {
		name := tt.esp
		if tt.esn {
			name += "-esn"
		}
		t.Run(name, func(t *testing.T) {
			l := newLab(t)
			keys := &staticKeys{spiOut: 0x3001, spiIn: 0x3002, keyOut: newKeyN(t, tt.encLen), keyIn: newKeyN(t, tt.encLen)}
			authOut, authIn := newKeyN(t, tt.authLen), newKeyN(t, tt.authLen)
			esn := ""
			if tt.esn {
				esn = "flag esn replay-window 128"
			}
			l.guestESPWith(keys, tt.algo(keys.keyOut, authOut), tt.algo(keys.keyIn, authIn), esn, esn)
			extra := fmt.Sprintf("esp = %q\n", tt.esp)
			if tt.authLen > 0 {
				extra += fmt.Sprintf("auth_key_out = %q\nauth_key_in = %q\n", authOut, authIn)
			}
			if tt.esn {
				extra += "esn = true\n"
			}
			st := l.startGresec("static", keys, extra)
			l.guestGRE(tt.mtu)
			if st.MTU != tt.mtu {
				t.Fatalf("gresec MTU %d for %s over IPv4/1500, want %d", st.MTU, tt.esp, tt.mtu)
			}
			if st.Outbound == nil || !strings.HasPrefix(st.Outbound.Transform, "esp-") || strings.Contains(st.Outbound.Transform, "gcm") {
				t.Fatalf("gresec outbound SA %+v", st.Outbound)
			}
			l.pingAll(tt.mtu)
			l.checkStaticCounters(keys)
		})
	}
}

// TestStaticESNAcross2to32: AES-256-GCM with `flag esn`, both ends'
// sequence numbers starting 16 below 2^32 (gresec's seq_out, the guest's
// replay-oseq; the guest's inbound replay state just below gresec's first
// number, so the kernel infers the high half as gresec's sender uses it).
// The pings carry both directions across the boundary: the high half,
// never sent, is in the AAD of every packet after it (RFC 4106 §5), and
// each receiver infers it from its window (RFC 4303 A2). Afterwards both
// ends' counters are past 2^32 and nothing was dropped.
func TestStaticESNAcross2to32(t *testing.T) {
	l := newLab(t)
	keys := &staticKeys{spiOut: 0x4001, spiIn: 0x4002, keyOut: newKey(t), keyIn: newKey(t)}
	const start = 1<<32 - 16
	gcm := aead("rfc4106(gcm(aes))")
	l.guestESPWith(keys, gcm(keys.keyOut, ""), gcm(keys.keyIn, ""),
		fmt.Sprintf("flag esn replay-window 1024 replay-seq 0x%x replay-seq-hi 0", start-256),
		fmt.Sprintf("flag esn replay-window 1024 replay-oseq 0x%x replay-oseq-hi 0", start))
	st := l.startGresec("static", keys, "esp = \"aes256gcm16\"\nesn = true\n", fmt.Sprintf("seq_out = %d\n", start))
	l.guestGRE(1442)
	if st.Outbound == nil || st.Outbound.Transform != "esp-aes-256-gcm-16-esn" {
		t.Fatalf("gresec outbound SA %+v", st.Outbound)
	}
	l.pingAll(1442)
	l.checkStaticCounters(keys)

	st = l.mustStatus()
	if st.Outbound.Sequence <= 1<<32 {
		t.Errorf("gresec sent up to sequence number %#x, want past 2^32", st.Outbound.Sequence)
	}
	if len(st.Inbound) != 1 || st.Inbound[0].Sequence <= 1<<32 {
		t.Errorf("gresec accepted up to %+v, want past 2^32", st.Inbound)
	}
	t.Logf("gresec sent up to %#x and accepted up to %#x", st.Outbound.Sequence, st.Inbound[0].Sequence)
	// The kernel's own ESN state: both of its SAs in subspace 1.
	out := l.guestRun("ip -s xfrm state")
	for _, line := range regexp.MustCompile(`.*oseq-hi.*`).FindAllString(out, -1) {
		t.Logf("guest: %s", strings.TrimSpace(line))
	}
	for _, want := range []string{`\bseq-hi 0x1\b`, `\boseq-hi 0x1\b`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("guest ESN state lacks %s:\n%s", want, out)
		}
	}
}

// newKeyN is n random bytes as "0x" and hex.
func newKeyN(t *testing.T, n int) string {
	k := make([]byte, n)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return "0x" + hex.EncodeToString(k)
}

// guestESPWith is guestESP with any algorithm clause and extra state
// options (flag esn, replay state) per direction: in is the guest's
// inbound SA (gresec's spi_out), out its outbound one.
func (l *lab) guestESPWith(keys *staticKeys, algoIn, algoOut, extraIn, extraOut string) {
	l.t.Helper()
	g, h := guestUnder[0].Addr(), hostUnder[0].Addr()
	if extraIn == "" {
		extraIn = "replay-window 32"
	}
	l.guestRun(fmt.Sprintf(`set -e
ip xfrm state add src %[2]s dst %[1]s proto esp spi 0x%[3]x mode transport %[4]s %[5]s
ip xfrm state add src %[1]s dst %[2]s proto esp spi 0x%[6]x mode transport %[7]s %[8]s
ip xfrm policy add src %[1]s dst %[2]s proto gre dir out tmpl src %[1]s dst %[2]s proto esp mode transport
ip xfrm policy add src %[2]s dst %[1]s proto gre dir in tmpl src %[2]s dst %[1]s proto esp mode transport`,
		g, h, keys.spiOut, extraIn, algoIn, keys.spiIn, extraOut, algoOut))
}
