package guest

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults, each overridable from the environment for slow or busy hosts.
var (
	// BootTimeout bounds Boot: TCG boots the stock kernel in about 8 s on
	// an idle machine, but the test machines are shared.
	BootTimeout = envDuration("GRESEC_INTEROP_BOOT_TIMEOUT", 180*time.Second)
	// RunTimeout bounds each Run.
	RunTimeout = envDuration("GRESEC_INTEROP_RUN_TIMEOUT", 60*time.Second)
	// MemoryMB is the guest's RAM.
	MemoryMB = 512
)

// ShareTag is the 9p mount tag guest-init.sh mounts at /share.
const ShareTag = "gresec"

// Guest is one running qemu guest.
type Guest struct {
	ns      string
	tap     string
	dir     string // work directory: share/, console.log, qemu.log
	share   string
	proc    *exec.Cmd
	done    chan struct{}
	waitErr error
	seq     atomic.Uint64
	stop    sync.Once
	stopErr error
	kernel  string
}

var tapSeq atomic.Uint32

// Boot starts the guest with its NIC on a TAP device created inside the host
// network namespace ns (which the caller made and will delete). The guest
// configures guestAddr on its eth0; the TAP gets hostAddr. Boot returns once
// the guest's agent has answered a command, or an error that carries the
// tail of the guest's console. Call Stop when done.
func Boot(ns string, hostAddr, guestAddr []netip.Prefix) (*Guest, error) {
	img, err := EnsureImage()
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "gresec-guest-")
	if err != nil {
		return nil, err
	}
	n := tapSeq.Add(1)
	g := &Guest{
		ns:    ns,
		tap:   fmt.Sprintf("gtap%d", n),
		dir:   work,
		share: filepath.Join(work, "share"),
		done:  make(chan struct{}),
	}
	if err := os.Mkdir(g.share, 0o755); err != nil {
		os.RemoveAll(work)
		return nil, err
	}
	if err := g.makeTap(hostAddr); err != nil {
		g.cleanup()
		return nil, err
	}

	var addrs []string
	for _, p := range guestAddr {
		addrs = append(addrs, p.String())
	}
	cmdline := strings.Join([]string{
		"console=ttyS0", "root=/dev/vda", "rootfstype=ext4", "rw", "init=/sbin/gresec-init",
		// The self-tests of every crypto algorithm cost seconds under TCG.
		"cryptomgr.notests", "net.ifnames=0", "fsck.mode=skip", "mitigations=off",
		"panic=-1", "quiet", "loglevel=4",
		"gresec.addr=" + strings.Join(addrs, ","),
		"gresec.share=" + ShareTag,
		"gresec.timeout=" + strconv.Itoa(int(RunTimeout/time.Second)),
	}, " ")
	// A locally administered MAC unique enough for guests sharing a host.
	mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", byte(os.Getpid()>>8), byte(os.Getpid()), byte(n))
	args := []string{
		"netns", "exec", ns,
		"qemu-system-x86_64",
		"-name", "gresec-guest",
		"-machine", "pc,accel=tcg",
		// AES-NI and PCLMUL under TCG let aesni_intel load, as on real peers.
		"-cpu", "max",
		"-smp", "1",
		"-m", strconv.Itoa(MemoryMB),
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
		"-serial", "file:" + filepath.Join(work, "console.log"),
		// A kernel panic ends qemu instead of rebooting into the same panic.
		"-no-reboot",
		"-kernel", filepath.Join(img, KernelFile),
		"-initrd", filepath.Join(img, InitrdFile),
		"-append", cmdline,
		// snapshot=on: writes go to a throw-away overlay, so guests share
		// one image and always start clean.
		"-drive", "file=" + filepath.Join(img, RootFile) + ",format=raw,if=virtio,snapshot=on,cache=unsafe",
		"-netdev", "tap,id=n0,ifname=" + g.tap + ",script=no,downscript=no",
		// romfile= skips the iPXE option ROM: -kernel boots need no PXE.
		"-device", "virtio-net-pci,netdev=n0,mac=" + mac + ",romfile=",
		"-fsdev", "local,id=fs0,path=" + g.share + ",security_model=none",
		"-device", "virtio-9p-pci,fsdev=fs0,mount_tag=" + ShareTag,
	}
	qlog, err := os.Create(filepath.Join(work, "qemu.log"))
	if err != nil {
		g.cleanup()
		return nil, err
	}
	defer qlog.Close()
	// `ip netns exec` execs qemu, so the PID we hold is qemu's.
	g.proc = exec.Command("ip", args...)
	g.proc.Stdout, g.proc.Stderr = qlog, qlog
	// The snapshot overlay goes to TMPDIR: keep it with the rest.
	g.proc.Env = append(os.Environ(), "TMPDIR="+work)
	// Its own process group: a Ctrl-C for the test does not kill the guest
	// before Stop runs. Pdeathsig (it survives the exec of qemu): a test
	// binary that dies without running Stop does not leave a guest behind.
	g.proc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := g.proc.Start(); err != nil {
		g.cleanup()
		return nil, fmt.Errorf("guest: starting qemu: %w", err)
	}
	go func() { g.waitErr = g.proc.Wait(); close(g.done) }()

	if err := g.waitReady(); err != nil {
		tail := g.diagnostics()
		g.Stop()
		return nil, fmt.Errorf("%w\n%s", err, tail)
	}
	out, err := g.Run("uname -r")
	if err != nil {
		tail := g.diagnostics()
		g.Stop()
		return nil, fmt.Errorf("guest: agent does not answer: %w\n%s", err, tail)
	}
	g.kernel = strings.TrimSpace(out)
	return g, nil
}

func (g *Guest) makeTap(hostAddr []netip.Prefix) error {
	steps := [][]string{{"-n", g.ns, "tuntap", "add", "dev", g.tap, "mode", "tap"}}
	for _, p := range hostAddr {
		s := []string{"-n", g.ns, "addr", "add", p.String(), "dev", g.tap}
		if p.Addr().Is6() {
			s = append(s, "nodad")
		}
		steps = append(steps, s)
	}
	steps = append(steps, []string{"-n", g.ns, "link", "set", g.tap, "up"})
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			return fmt.Errorf("guest: ip %s: %w: %s", strings.Join(s, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

func (g *Guest) waitReady() error {
	deadline := time.Now().Add(BootTimeout)
	ready := filepath.Join(g.share, "ready")
	for {
		if _, err := os.Stat(ready); err == nil {
			return nil
		}
		select {
		case <-g.done:
			return fmt.Errorf("guest: qemu exited during boot: %v", g.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("guest: agent not ready after %v", BootTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Run runs cmd with bash in the guest, as root in /root, and returns its
// combined output. A non-zero exit, the guest-side timeout (RunTimeout,
// exit code 124) and a dead guest are errors that carry the output.
// Commands run one at a time in the order they arrive; a command may
// background long-running processes (`tcpdump ... &`), which outlive it.
func (g *Guest) Run(cmd string) (string, error) {
	return g.RunTimeout(cmd, RunTimeout)
}

// RunTimeout is Run with its own timeout.
func (g *Guest) RunTimeout(cmd string, timeout time.Duration) (string, error) {
	select {
	case <-g.done:
		return "", fmt.Errorf("guest: not running (qemu exited: %v)", g.waitErr)
	default:
	}
	secs := int((timeout + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	id := filepath.Join(g.share, fmt.Sprintf("%08d", g.seq.Add(1)))
	if err := os.WriteFile(id+".timeout", []byte(strconv.Itoa(secs)+"\n"), 0o644); err != nil {
		return "", err
	}
	// Written under another name and renamed: the agent only picks up
	// *.cmd files, and then only complete ones.
	if err := os.WriteFile(id+".cmd.tmp", []byte(cmd+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(id+".cmd.tmp", id+".cmd"); err != nil {
		return "", err
	}
	// The guest enforces the timeout; the host waits a little longer so a
	// stuck agent (or a queue of earlier commands) is still bounded.
	deadline := time.Now().Add(timeout + 15*time.Second)
	for {
		if rcb, err := os.ReadFile(id + ".rc"); err == nil {
			out, _ := os.ReadFile(id + ".out")
			os.Remove(id + ".rc")
			os.Remove(id + ".out")
			rc, err := strconv.Atoi(strings.TrimSpace(string(rcb)))
			if err != nil {
				return string(out), fmt.Errorf("guest: bad exit code %q", rcb)
			}
			switch rc {
			case 0:
				return string(out), nil
			case 124, 137:
				return string(out), fmt.Errorf("guest: %q timed out after %ds: %s", short(cmd), secs, bytes.TrimSpace(out))
			default:
				return string(out), fmt.Errorf("guest: %q: exit status %d: %s", short(cmd), rc, bytes.TrimSpace(out))
			}
		}
		select {
		case <-g.done:
			return "", fmt.Errorf("guest: qemu exited while running %q: %v", short(cmd), g.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("guest: no answer to %q within %v", short(cmd), timeout+15*time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func short(cmd string) string {
	cmd = strings.TrimSpace(cmd)
	if i := strings.IndexByte(cmd, '\n'); i >= 0 {
		cmd = cmd[:i] + " ..."
	}
	if len(cmd) > 120 {
		cmd = cmd[:117] + "..."
	}
	return cmd
}

// Share is the host directory the guest sees at /share: files put there
// (a helper binary) can be run in the guest.
func (g *Guest) Share() string { return g.share }

// Kernel is the guest's `uname -r`.
func (g *Guest) Kernel() string { return g.kernel }

// Tap is the name of the host-side TAP device inside the namespace.
func (g *Guest) Tap() string { return g.tap }

// PID is qemu's process ID.
func (g *Guest) PID() int { return g.proc.Process.Pid }

// Console returns what the guest has written to its serial console so far.
func (g *Guest) Console() string {
	b, _ := os.ReadFile(filepath.Join(g.dir, "console.log"))
	return string(b)
}

// diagnostics is the tail of the console and qemu's own output, for errors.
func (g *Guest) diagnostics() string {
	q, _ := os.ReadFile(filepath.Join(g.dir, "qemu.log"))
	return "--- guest console (tail) ---\n" + tail(g.Console(), 40) +
		"--- qemu ---\n" + tail(string(q), 10)
}

func tail(s string, lines int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n") + "\n"
}

// Stop kills qemu by PID (SIGTERM, then SIGKILL after 5 s), removes the TAP
// device and the work directory. It is safe to call more than once.
func (g *Guest) Stop() error {
	g.stop.Do(func() {
		if g.proc != nil && g.proc.Process != nil {
			select {
			case <-g.done:
			default:
				_ = g.proc.Process.Signal(syscall.SIGTERM)
				select {
				case <-g.done:
				case <-time.After(5 * time.Second):
					_ = g.proc.Process.Kill()
					<-g.done
					g.stopErr = errors.New("guest: qemu ignored SIGTERM for 5 s; killed")
				}
			}
		}
		g.cleanup()
	})
	return g.stopErr
}

func (g *Guest) cleanup() {
	// The namespace may already be gone, and the TAP with it.
	_ = exec.Command("ip", "-n", g.ns, "link", "del", g.tap).Run()
	if os.Getenv("GRESEC_INTEROP_KEEP_GUEST") != "" {
		fmt.Fprintf(os.Stderr, "guest: keeping %s (GRESEC_INTEROP_KEEP_GUEST)\n", g.dir)
		return
	}
	os.RemoveAll(g.dir)
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
	}
	return def
}
