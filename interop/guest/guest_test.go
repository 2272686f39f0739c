package guest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireGuest fails under CI, which must run these tests, and skips loudly
// elsewhere when guests cannot run here.
func requireGuest(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIPPED (-short): boots a qemu guest")
	}
	if err := Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("guest tests must run under CI: %v", err)
		}
		t.Skipf("SKIPPED: %v", err)
	}
}

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestBootRunStop boots one guest and checks everything the scenario tests
// rely on: the agent's output and exit codes, its timeout, the underlay in
// both families, the kernel features (GRE, XFRM with rfc4106(gcm(aes))),
// and that Stop ends qemu and removes the TAP.
func TestBootRunStop(t *testing.T) {
	requireGuest(t)
	ns := fmt.Sprintf("gresec-guest-%d", os.Getpid())
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	ipCmd(t, "-n", ns, "link", "set", "lo", "up")

	host := []netip.Prefix{netip.MustParsePrefix("198.18.9.1/24"), netip.MustParsePrefix("2001:db8:9::1/64")}
	guest := []netip.Prefix{netip.MustParsePrefix("198.18.9.2/24"), netip.MustParsePrefix("2001:db8:9::2/64")}
	start := time.Now()
	if _, err := EnsureImage(); err != nil {
		t.Fatal(err)
	}
	t.Logf("image ready in %v", time.Since(start).Round(100*time.Millisecond))
	start = time.Now()
	g, err := Boot(ns, host, guest)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("booted %s in %v", g.Kernel(), time.Since(start).Round(100*time.Millisecond))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			g.Stop()
		}
	})
	if !strings.HasPrefix(g.Kernel(), "6.") {
		t.Errorf("guest kernel %q, want Debian's 6.x", g.Kernel())
	}

	t.Run("output", func(t *testing.T) {
		out, err := g.Run("echo hello; echo to-stderr >&2")
		if err != nil || out != "hello\nto-stderr\n" {
			t.Fatalf("Run = %q, %v; want both streams", out, err)
		}
		// Quoting and multi-line scripts survive the trip.
		out, err = g.Run("x='a b'\nprintf '%s|' \"$x\" \"$(hostname)\"")
		if err != nil || out != "a b|gresec-guest|" {
			t.Fatalf("Run = %q, %v", out, err)
		}
	})
	t.Run("exit-status", func(t *testing.T) {
		out, err := g.Run("echo partial; exit 3")
		if err == nil || !strings.Contains(err.Error(), "exit status 3") || out != "partial\n" {
			t.Fatalf("Run = %q, %v; want exit status 3 and the output", out, err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		_, err := g.RunTimeout("sleep 30", time.Second)
		if err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("RunTimeout(sleep 30, 1s) = %v; want a timeout", err)
		}
		// The agent is still there afterwards.
		if out, err := g.Run("echo alive"); err != nil || out != "alive\n" {
			t.Fatalf("after a timeout: %q, %v", out, err)
		}
	})
	t.Run("underlay", func(t *testing.T) {
		for _, dst := range []string{"198.18.9.2", "2001:db8:9::2"} {
			out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "5", dst).CombinedOutput()
			if err != nil {
				t.Errorf("host -> guest %s: %v\n%s", dst, err, out)
			}
		}
		for _, dst := range []string{"198.18.9.1", "2001:db8:9::1"} {
			if out, err := g.Run("ping -c 2 -i 0.2 -W 5 " + dst); err != nil {
				t.Errorf("guest -> host %s: %v\n%s", dst, err, out)
			}
		}
	})
	t.Run("kernel-features", func(t *testing.T) {
		// The host kernel lacks exactly these; the guest exists for them.
		out, err := g.Run(`set -e
ip tunnel add gtest mode gre local 198.18.9.2 remote 198.18.9.1 ttl 64
ip -d link show gtest
ip xfrm state add src 198.18.9.2 dst 198.18.9.1 proto esp spi 0x4242 mode transport \
	aead 'rfc4106(gcm(aes))' 0x$(printf '11%.0s' $(seq 36)) 128
ip xfrm state
ip xfrm state flush
ip tunnel del gtest`)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"gre remote 198.18.9.1 local 198.18.9.2", "rfc4106(gcm(aes))", "spi 0x00004242"} {
			if !strings.Contains(out, want) {
				t.Errorf("guest output lacks %q:\n%s", want, out)
			}
		}
	})

	pid := g.PID()
	if err := g.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	stopped = true
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("qemu pid %d still exists after Stop (kill 0: %v)", pid, err)
	}
	if out, err := exec.Command("ip", "-n", ns, "link", "show", g.Tap()).CombinedOutput(); err == nil {
		t.Errorf("TAP %s still exists after Stop:\n%s", g.Tap(), out)
	}
	if _, err := g.Run("true"); err == nil {
		t.Error("Run after Stop succeeded")
	}
	if err := g.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestBootFailsCleanly checks that Boot into a namespace that does not
// exist returns an error and leaves no qemu behind.
func TestBootFailsCleanly(t *testing.T) {
	requireGuest(t)
	ns := fmt.Sprintf("gresec-guest-missing-%d", os.Getpid())
	g, err := Boot(ns, nil, nil)
	if err == nil {
		g.Stop()
		t.Fatal("Boot into a missing namespace succeeded")
	}
}

func TestShort(t *testing.T) {
	long := strings.Repeat("x", 300)
	for in, want := range map[string]string{
		"  ls -l \n":         "ls -l",
		"set -e\nip a\nip r": "set -e ...",
		long:                 long[:117] + "...",
	} {
		if got := short(in); got != want {
			t.Errorf("short(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTail(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc\n"},
		{"a\n", 5, "a\n"},
		{"", 5, ""},
	} {
		if got := tail(c.in, c.n); got != c.want {
			t.Errorf("tail(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

// TestBuildScriptUsesCache runs the embedded build-image.sh against a cache
// that already holds an image for this exact recipe: it must print that
// directory and build nothing, and it must clear a half-finished build left
// by a killed run.
func TestBuildScriptUsesCache(t *testing.T) {
	requireGuest(t)
	cache := t.TempDir()
	sum := sha256.Sum256(append(append(append([]byte{}, buildScript...), initScript...), "bookworm\n"...))
	want := filepath.Join(cache, "image-"+hex.EncodeToString(sum[:])[:16])
	for _, d := range []string{want, filepath.Join(cache, ".build.stale")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(want, "manifest.txt"), []byte("test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	recipe := t.TempDir()
	os.WriteFile(filepath.Join(recipe, "build-image.sh"), buildScript, 0o755)
	os.WriteFile(filepath.Join(recipe, "guest-init.sh"), initScript, 0o755)
	cmd := exec.Command("/bin/bash", filepath.Join(recipe, "build-image.sh"))
	cmd.Env = append(os.Environ(), "GRESEC_INTEROP_CACHE="+cache)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build-image.sh: %v\n%s", err, out)
	}
	if !strings.HasSuffix(string(out), "IMAGE_DIR="+want+"\n") || !strings.Contains(string(out), "cached: ") {
		t.Errorf("build-image.sh did not report the cached image %s:\n%s", want, out)
	}
	if _, err := os.Stat(filepath.Join(cache, ".build.stale")); err == nil {
		t.Error("build-image.sh left a stale .build.* directory behind")
	}
}
