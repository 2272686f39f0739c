// Package netns builds throw-away test sites: network namespaces joined by
// veth, and processes started inside them that are later ended by PID.
//
// It drives iproute2 (`ip`) rather than netlink so that every step it takes
// is a command an operator could paste to reproduce it.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	vnetns "github.com/vishvananda/netns"
)

// NS is a network namespace created by this package.
type NS struct {
	Name string
}

// Unique returns a namespace name that no concurrent run uses.
func Unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq())
}

var (
	seqMu sync.Mutex
	seqN  int
)

func seq() int {
	seqMu.Lock()
	defer seqMu.Unlock()
	seqN++
	return seqN
}

// Create adds a namespace with its loopback up.
func Create(name string) (*NS, error) {
	if _, err := Cmd("ip", "netns", "add", name); err != nil {
		return nil, err
	}
	n := &NS{Name: name}
	if _, err := n.Run("ip", "link", "set", "lo", "up"); err != nil {
		n.Delete()
		return nil, err
	}
	return n, nil
}

// Delete removes the namespace; processes still inside keep it alive, so end
// them first.
func (n *NS) Delete() error {
	_, err := Cmd("ip", "netns", "delete", n.Name)
	return err
}

// Run runs a command inside the namespace and returns its combined output.
func (n *NS) Run(name string, args ...string) (string, error) {
	return Cmd("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// RunTimeout is Run with a deadline, for commands that could wait forever.
func (n *NS) RunTimeout(d time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Cmd runs a command in the current namespace.
func Cmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Link joins namespaces a and b with a veth pair named ifA/ifB and gives
// each end its addresses. IPv6 addresses skip duplicate address detection
// so they are usable at once.
func Link(a *NS, ifA string, addrA []netip.Prefix, b *NS, ifB string, addrB []netip.Prefix) error {
	if _, err := Cmd("ip", "link", "add", ifA, "netns", a.Name, "type", "veth", "peer", "name", ifB, "netns", b.Name); err != nil {
		return err
	}
	for _, side := range []struct {
		ns    *NS
		iface string
		addrs []netip.Prefix
	}{{a, ifA, addrA}, {b, ifB, addrB}} {
		for _, p := range side.addrs {
			args := []string{"addr", "add", p.String(), "dev", side.iface}
			if p.Addr().Is6() {
				args = append(args, "nodad")
			}
			if _, err := side.ns.Run("ip", args...); err != nil {
				return err
			}
		}
		if _, err := side.ns.Run("ip", "link", "set", side.iface, "up"); err != nil {
			return err
		}
	}
	return nil
}

// Proc is a process started in a namespace.
type Proc struct {
	Cmd  *exec.Cmd
	Out  *SyncBuffer
	done chan struct{}
	err  error
}

// Start starts a long-running command in the namespace. Its output
// (stdout and stderr) collects in Out.
func (n *NS) Start(name string, args ...string) (*Proc, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	p := &Proc{Cmd: cmd, Out: &SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Out, p.Out
	// Its own process group, so that a Ctrl-C meant for us does not reach it
	// before we stop it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process (by PID; `ip netns exec` execs the
// command, so the PID is the command's), waits up to grace, then SIGKILLs.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.done
		return errors.New("did not stop within " + grace.String() + " of SIGTERM; killed")
	}
}

// SyncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor polls cond every 50 ms until it is true or timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Do runs f on an OS thread switched into the namespace. Sockets that f
// creates stay in that namespace after Do returns, so a test can hold
// sockets in several sites at once.
func (n *NS) Do(f func() error) error {
	runtime.LockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := vnetns.GetFromName(n.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := vnetns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := vnetns.Set(orig); err != nil {
		// The thread is stuck in the wrong namespace: leave it locked so
		// the runtime ends it with this goroutine instead of reusing it.
		return fmt.Errorf("netns: returning from %s: %w", n.Name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}
