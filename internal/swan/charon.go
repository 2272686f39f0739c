// Package swan runs strongSwan's charon as an IKEv2 peer for tests, one
// instance per network namespace.
//
// The kernel on the test machines has XFRM netlink but no ESP, so charon
// could complete IKE but would refuse every CHILD_SA. Each instance therefore
// runs with interop/strongswan/xfrmshim.c preloaded, which makes the
// SA-installing netlink requests harmless no-ops (see the README there).
// charon then negotiates, installs (in its own bookkeeping), rekeys and
// deletes CHILD_SAs exactly as it would for real, and logs every key at
// level 4. It moves no ESP: tests compare gresec's keys with charon's log,
// or capture IKE on the wire.
//
// Every instance has its own directory (config, log, vici socket) and a
// private /run (charon's pid file path is fixed), so several can run side by
// side. Stop ends charon by PID and removes the directory.
package swan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CharonPath is Debian's charon daemon (strongswan-charon).
const CharonPath = "/usr/lib/ipsec/charon"

// Options tune an instance. The zero value is what the gresec tests use.
type Options struct {
	// Shim is a prebuilt xfrmshim.so. Empty: the environment variable
	// GRESEC_XFRMSHIM, else interop/strongswan/xfrmshim.c built with gcc
	// (once per source content, kept in $TMPDIR/gresec-xfrmshim-<uid>/).
	Shim string
	// NoShim runs charon without the shim: IKE works, CHILD_SAs fail with
	// NO_PROPOSAL_CHOSEN on a kernel without ESP.
	NoShim bool
	// LogLevels override charon's per-group file log levels (groups: dmn mgr
	// ike chd job cfg knl net asn enc lib esp; -1..4). Defaults: ike, chd and
	// net 4 (keys and packets), cfg and knl 2, everything else 1.
	LogLevels map[string]int
	// Plugins replaces the charon plugin list (DefaultPlugins).
	Plugins []string
	// CharonConf is extra strongswan.conf text placed inside `charon { }`,
	// e.g. "retransmit_tries = 2".
	CharonConf string
	// StartTimeout bounds the wait for vici to answer; default 15 s.
	StartTimeout time.Duration
	// KeepDir leaves the instance directory in place after Stop, for
	// debugging; Dir reports where it is.
	KeepDir bool
	// Libipsec gives charon its own userspace data plane: the
	// kernel-libipsec plugin (Debian libcharon-extra-plugins) loaded before
	// kernel-netlink (else kernel-netlink becomes the IPsec backend and
	// the CHILD_SA fails), no shim, routes installed (table 220, through
	// the ipsec0 TUN it creates). Tunnel mode only, ESP in UDP 4500.
	// Plugins, if set, must list kernel-libipsec itself.
	Libipsec bool
}

// LibipsecPlugins are DefaultPlugins with kernel-libipsec ahead of
// kernel-netlink.
func LibipsecPlugins() []string {
	var out []string
	for _, p := range DefaultPlugins {
		if p == "kernel-netlink" {
			out = append(out, "kernel-libipsec")
		}
		out = append(out, p)
	}
	return out
}

// DefaultPlugins are enough for PSK and certificate authentication with
// AES-GCM, AES-CBC, SHA-1/2, MODP and ECP groups.
var DefaultPlugins = []string{
	"random", "nonce", "openssl", "aes", "sha1", "sha2", "hmac", "gcm", "pem", "pkcs1",
	"x509", "pubkey", "kdf", "kernel-netlink", "socket-default", "vici",
}

// swanctlPlugins are what swanctl needs to parse configurations and
// credentials; it must not try to load the daemon's plugins.
const swanctlPlugins = "random nonce openssl aes sha1 sha2 hmac gcm pem pkcs1 x509 pubkey"

// Charon is one running charon.
type Charon struct {
	ns   string
	dir  string
	conf string // strongswan.conf
	uri  string // vici
	opts Options

	cmd  *exec.Cmd
	done chan struct{}
	werr error // from Wait, valid after done

	stopOnce sync.Once
	stopErr  error
	mu       sync.Mutex
	finalLog string // the log read just before the directory went away
	stopped  bool
}

// Start runs charon inside the existing network namespace ns with the
// swanctl.conf content conf (connections and secrets), loads it with
// `swanctl --load-all` and returns once vici answers and the load
// succeeded. On error nothing is left running.
func Start(ns string, conf string, opts Options) (*Charon, error) {
	if _, err := os.Stat(CharonPath); err != nil {
		return nil, fmt.Errorf("swan: %s missing (strongSwan not installed; swan.Install() or apt-get install %s): %w",
			CharonPath, strings.Join(Packages, " "), err)
	}
	dir, err := os.MkdirTemp("", "gresec-swan-")
	if err != nil {
		return nil, err
	}
	c := &Charon{
		ns:   ns,
		dir:  dir,
		conf: filepath.Join(dir, "strongswan.conf"),
		uri:  "unix://" + filepath.Join(dir, "charon.vici"),
		opts: opts,
		done: make(chan struct{}),
	}
	if err := c.start(conf); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Charon) start(conf string) error {
	if err := c.writeFiles(conf); err != nil {
		return err
	}
	env := []string{"STRONGSWAN_CONF=" + c.conf}
	if !c.opts.NoShim && !c.opts.Libipsec {
		shim, err := c.shim()
		if err != nil {
			return err
		}
		env = append(env, "LD_PRELOAD="+shim, "XFRMSHIM_VERBOSE=1")
	}
	out, err := os.Create(filepath.Join(c.dir, "stderr"))
	if err != nil {
		return err
	}
	defer out.Close()

	// ip netns exec, unshare, sh and env all exec the next program, so the
	// PID we hold is charon's. The bind mount gives charon a /run of its own
	// (its pid file path is compiled in) without touching the host's: the
	// mount namespace is new and private.
	args := []string{"netns", "exec", c.ns,
		"unshare", "--mount", "--propagation", "private",
		"sh", "-c", `mount --bind "$0/run" /run && exec "$@"`, c.dir,
		"env"}
	args = append(args, env...)
	args = append(args, CharonPath)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group: a Ctrl-C for the test does not reach charon
	// before Stop does. Pdeathsig: a test binary that dies (timeout panic)
	// does not leave charon behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("swan: starting charon in %s: %w", c.ns, err)
	}
	c.cmd = cmd
	go func() { c.werr = cmd.Wait(); close(c.done) }()

	timeout := c.opts.StartTimeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		if _, err := c.swanctl(5*time.Second, "--stats"); err == nil {
			break
		}
		select {
		case <-c.done:
			return fmt.Errorf("swan: charon in %s exited during start-up (%v): %s%s", c.ns, c.werr, c.Output(), tail(c.readLog(), 20))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("swan: vici of charon in %s did not answer within %v: %s%s", c.ns, timeout, c.Output(), tail(c.readLog(), 20))
		}
	}
	if out, err := c.Swanctl("--load-all", "--noprompt", "--file", filepath.Join(c.dir, "swanctl", "swanctl.conf")); err != nil {
		return fmt.Errorf("swan: loading swanctl.conf in %s: %w\n%s", c.ns, err, out)
	}
	return nil
}

func (c *Charon) writeFiles(conf string) error {
	if err := os.Mkdir(filepath.Join(c.dir, "run"), 0o700); err != nil {
		return err
	}
	// swanctl reads credentials from these next to swanctl.conf and
	// complains about each one that is missing.
	for _, sub := range []string{"x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl",
		"pubkey", "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12"} {
		if err := os.MkdirAll(filepath.Join(c.dir, "swanctl", sub), 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(c.dir, "swanctl", "swanctl.conf"), []byte(conf), 0o600); err != nil {
		return err
	}
	return os.WriteFile(c.conf, []byte(strongswanConf(c.dir, c.opts)), 0o600)
}

// strongswanConf is the daemon's configuration: only the listed plugins
// (nothing from /etc), vici on a socket in dir, a file log in dir.
func strongswanConf(dir string, o Options) string {
	levels := map[string]int{"default": 1, "ike": 4, "chd": 4, "net": 4, "cfg": 2, "knl": 2, "enc": 1}
	for k, v := range o.LogLevels {
		levels[k] = v
	}
	plugins := o.Plugins
	if len(plugins) == 0 {
		plugins = DefaultPlugins
		if o.Libipsec {
			plugins = LibipsecPlugins()
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "charon {\n  load = %s\n", strings.Join(plugins, " "))
	// kernel-libipsec reaches its TUN only through the routes charon
	// installs; with the shim there is no data plane to route to.
	fmt.Fprintf(&b, "  install_routes = %s\n  install_virtual_ip = no\n", map[bool]string{true: "yes", false: "no"}[o.Libipsec])
	fmt.Fprintf(&b, "  plugins {\n    vici {\n      socket = unix://%s/charon.vici\n    }\n  }\n", dir)
	// An empty syslog section stops the default syslog logger.
	b.WriteString("  syslog {\n  }\n")
	fmt.Fprintf(&b, "  filelog {\n    charon {\n      path = %s/charon.log\n", dir)
	b.WriteString("      time_format = %H:%M:%S\n      ike_name = yes\n      append = no\n      flush_line = yes\n")
	for _, k := range []string{"default", "dmn", "mgr", "ike", "chd", "job", "cfg", "knl", "net", "asn", "enc", "lib", "esp", "tls", "tnc", "imc", "imv", "pts"} {
		if v, ok := levels[k]; ok {
			fmt.Fprintf(&b, "      %s = %d\n", k, v)
		}
	}
	b.WriteString("    }\n  }\n")
	if o.CharonConf != "" {
		b.WriteString(o.CharonConf)
		b.WriteString("\n")
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, "swanctl {\n  load = %s\n}\n", swanctlPlugins)
	return b.String()
}

// Dir is the instance's directory: strongswan.conf, swanctl/swanctl.conf,
// charon.log, stderr (charon's and the shim's output), charon.vici.
func (c *Charon) Dir() string { return c.dir }

// PID is charon's process ID.
func (c *Charon) PID() int { return c.cmd.Process.Pid }

// Swanctl runs swanctl with args against this instance's vici socket and
// returns its combined output. A non-zero exit is an error.
func (c *Charon) Swanctl(args ...string) (string, error) {
	return c.swanctl(60*time.Second, args...)
}

func (c *Charon) swanctl(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "swanctl", append(args, "--uri", c.uri)...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+c.conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("swanctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Initiate starts the CHILD_SA config child (and its IKE SA if needed) and
// waits up to 30 s for it to be established.
func (c *Charon) Initiate(child string) error {
	_, err := c.Swanctl("--initiate", "--child", child, "--timeout", "30")
	return err
}

// ListSAs returns `swanctl --list-sas` as text. SAs gives the same parsed.
func (c *Charon) ListSAs() (string, error) {
	return c.Swanctl("--list-sas", "--noblock")
}

// SAs lists the IKE SAs and their CHILD_SAs.
func (c *Charon) SAs() ([]IKESA, error) {
	out, err := c.Swanctl("--list-sas", "--noblock", "--pretty")
	if err != nil {
		return nil, err
	}
	return ParseSAs(out)
}

// ChildKeys returns the keys of every CHILD_SA this charon installed, in
// order, from its log (ike and chd at level 4).
func (c *Charon) ChildKeys() ([]ChildKeyLog, error) {
	_, children := ParseKeyLog(c.Log())
	if len(children) == 0 {
		return nil, errors.New("swan: no CHILD_SA keys in the log (is chd logged at level 4?)")
	}
	return children, nil
}

// IKEKeys returns the keys of every IKE SA this charon derived, in order.
func (c *Charon) IKEKeys() ([]IKEKeyLog, error) {
	ike, _ := ParseKeyLog(c.Log())
	if len(ike) == 0 {
		return nil, errors.New("swan: no IKE SA keys in the log (is ike logged at level 4?)")
	}
	return ike, nil
}

// Log returns charon's log so far (after Stop, the whole log).
func (c *Charon) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.finalLog
	}
	return c.readLog()
}

func (c *Charon) readLog() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "charon.log"))
	return string(b)
}

// Output returns what charon and the shim wrote to stdout and stderr
// (the shim reports each netlink request it rewrites).
func (c *Charon) Output() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "stderr"))
	return string(b)
}

// Stop ends charon (SIGTERM by PID, SIGKILL after 10 s) and removes its
// directory unless Options.KeepDir. It may be called more than once.
func (c *Charon) Stop() error {
	c.stopOnce.Do(func() {
		if c.cmd != nil {
			select {
			case <-c.done:
			default:
				_ = c.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-c.done:
				case <-time.After(10 * time.Second):
					_ = c.cmd.Process.Kill()
					<-c.done
					c.stopErr = fmt.Errorf("swan: charon (pid %d) ignored SIGTERM for 10 s; killed", c.cmd.Process.Pid)
				}
			}
		}
		c.mu.Lock()
		c.finalLog = c.readLog()
		c.stopped = true
		c.mu.Unlock()
		if !c.opts.KeepDir {
			if err := os.RemoveAll(c.dir); err != nil && c.stopErr == nil {
				c.stopErr = err
			}
		}
	})
	return c.stopErr
}

// RedactedLog is Log without the hexdump lines that carry keys, nonces,
// the PSK and packets: safe to print in test output.
func (c *Charon) RedactedLog() string { return Redact(c.Log()) }

// Redact drops the hexdump lines (`  16: 6E 6F ...`) from a charon log,
// keeping the `label => N bytes @ addr` lines that announce them.
func Redact(log string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(log, "\n") {
		if m := lineRE.FindStringSubmatch(strings.TrimRight(line, "\r\n")); m != nil && hexRE.MatchString(m[lineText]) {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(Redact(s), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n--- charon.log (tail, redacted) ---\n" + strings.Join(lines, "\n")
}
