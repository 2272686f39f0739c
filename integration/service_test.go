package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
	"github.com/gresec/gresec/privdrop"
)

// TestMakeInstallLayout: `make install DESTDIR=...` puts the binary, the
// man pages, the systemd unit (pointing at the installed binary), an
// example config and a random 0600 PSK where they belong, and the unit
// passes systemd-analyze verify.
func TestMakeInstallLayout(t *testing.T) {
	nstest.RequireRoot(t, "make install writes files owned by root")
	dest := t.TempDir()
	out, err := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/usr/local").CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{"usr/local/sbin/gresec", 0o755},
		{"usr/local/share/man/man8/gresec.8", 0o644},
		{"usr/local/share/man/man5/gresec.toml.5", 0o644},
		{"lib/systemd/system/gresec@.service", 0o644},
		{"lib/systemd/system/gresec.service", 0o644},
		{"etc/gresec/tunnels.d", 0o700 | os.ModeDir},
		{"etc/gresec", 0o700 | os.ModeDir},
		{"etc/gresec/gresec.toml.example", 0o644},
		{"etc/gresec/gresec.toml", 0o600},
		{"etc/gresec/psk", 0o600},
	} {
		st, err := os.Stat(filepath.Join(dest, f.path))
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		if st.Mode() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.path, st.Mode(), f.mode)
		}
	}
	psk, _ := os.ReadFile(filepath.Join(dest, "etc/gresec/psk"))
	if len(strings.TrimSpace(string(psk))) < 40 {
		t.Errorf("PSK file holds %d bytes, want a 32-byte key in base64", len(psk))
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "lib/systemd/system/gresec@.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/local/sbin/gresec up -c /etc/gresec/%i.toml") {
		t.Errorf("unit does not start the installed binary:\n%s", unit)
	}
	for _, want := range []string{"AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE", "Restart=on-failure", "Type=notify", "User=gresec"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	// A second install keeps the admin's config and key.
	os.WriteFile(filepath.Join(dest, "etc/gresec/psk"), []byte("mine-do-not-touch\n"), 0o600)
	if out, err := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest).CombinedOutput(); err != nil {
		t.Fatalf("second make install: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "etc/gresec/psk")); string(b) != "mine-do-not-touch\n" {
		t.Errorf("a reinstall replaced the PSK file")
	}

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatalf("systemd-analyze is not installed (Debian package systemd): `sudo make test` installs it")
	}
	// verify needs the binary at ExecStart's path: point it at the test's.
	test := filepath.Join(t.TempDir(), "gresec@lab.service")
	os.WriteFile(test, []byte(strings.ReplaceAll(string(unit), "/usr/local/sbin/gresec", gresecBin)), 0o644)
	v := exec.Command("systemd-analyze", "verify", "--man=no", test)
	if out, err := v.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestRunsLikeTheSystemdUnit starts gresec the way gresec@.service does,
// as an unprivileged user whose only privileges are the unit's three
// ambient capabilities, with NOTIFY_SOCKET set: it must negotiate with
// its peer and carry traffic (so those three suffice), tell systemd it is
// ready, and keep only CAP_NET_ADMIN once running.
func TestRunsLikeTheSystemdUnit(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is missing")
	}
	p := startPair(t, pairOpt{keying: "ikev2"})
	p.a.proc.Stop(5 * time.Second) // a is restarted below, the unit's way
	p.a.proc = nil

	// The files the unit's user reads are its own, as make install sets,
	// in a directory it can reach.
	if err := os.Chmod(filepath.Dir(p.dir), 0o711); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p.dir, p.a.cfgPath, filepath.Join(p.dir, "a.psk")} {
		if err := os.Chown(f, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	// /dev/net/tun is 0600 here (on a normal Debian host it is 0666): give
	// the process a 0666 node of its own in a private mount namespace.
	tunNode := filepath.Join(t.TempDir(), "tun")
	if out, err := exec.Command("mknod", "-m", "666", tunNode, "c", "10", "200").CombinedOutput(); err != nil {
		t.Fatalf("mknod: %v: %s", err, out)
	}
	notify := filepath.Join(p.dir, "notify.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	os.Chown(notify, 65534, 65534)

	const caps = "+net_admin,+net_raw,+net_bind_service"
	script := fmt.Sprintf(`mount --bind %s /dev/net/tun && NOTIFY_SOCKET=%s exec setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps %s --ambient-caps %s --bounding-set %s %s up -c %s`,
		tunNode, notify, caps, caps, caps, gresecBin, p.a.cfgPath)
	proc, err := p.a.ns.Start("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	p.a.proc = proc
	t.Cleanup(func() { proc.Stop(5 * time.Second) })

	nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 512)
	n, err := nc.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "READY=1") {
		exited, perr := proc.Exited()
		t.Fatalf("no READY=1 from gresec (got %q, %v; exited %v %v):\n%s", buf[:n], err, exited, perr, proc.Out)
	}
	p.waitEstablished(15 * time.Second)
	for _, c := range []struct{ from, to *side }{{p.a, p.b}, {p.b, p.a}} {
		if got, out := p.ping(c.from, c.to.tun4.Addr(), 3); got < 3 {
			t.Errorf("ping %s: %d of 3\n%s", c.to.tun4.Addr(), got, out)
		}
	}
	pid := proc.Cmd.Process.Pid
	st, err := privdrop.ReadStatus(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	const netAdmin = uint64(1) << privdrop.CapNetAdmin
	if st.UID[1] != 65534 || st.CapEff != netAdmin || st.CapPrm != netAdmin || st.CapAmb != 0 || !st.NoNewPrivs {
		t.Errorf("running gresec: uid %v eff %#x prm %#x amb %#x nnp %v; want uid 65534 and only CAP_NET_ADMIN (%#x)",
			st.UID, st.CapEff, st.CapPrm, st.CapAmb, st.NoNewPrivs, netAdmin)
	}
	if !netns.WaitFor(2*time.Second, func() bool { return strings.Contains(proc.Out.String(), "dropped capabilities") }) {
		t.Errorf("no log line about dropping capabilities:\n%s", proc.Out)
	}
}

// TestManPagesAndScriptsLint: the man pages render without a groff warning
// and the rc.d scripts parse (they run on BSD, which is not here).
func TestManPagesAndScriptsLint(t *testing.T) {
	for _, tool := range []string{"groff", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (Debian package groff-base): `sudo make test` installs it", tool)
		}
	}
	for _, page := range []string{"../man/gresec.8", "../man/gresec.toml.5"} {
		out, err := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", page).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff %s: %v\n%s", page, err, out)
		}
	}
	for _, script := range []string{"../dist/freebsd/gresec", "../dist/openbsd/gresec"} {
		if out, err := exec.Command("sh", "-n", script).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", script, err, out)
		}
		if st, err := os.Stat(script); err != nil || st.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable", script)
		}
	}
}
