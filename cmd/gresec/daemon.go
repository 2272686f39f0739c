package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/control"
	"github.com/gresec/gresec/demux"
	"github.com/gresec/gresec/metrics"
	"github.com/gresec/gresec/privdrop"
	"github.com/gresec/gresec/tunnel"
)

// A daemon of many tunnels: `gresec up -d DIR` (every tunnel file of the
// directory) or `gresec up -c A -c B`. The tunnels share the daemon's
// sockets (package demux), its control socket and its metrics endpoint.
// SIGHUP re-reads the set and starts, stops or reloads only the tunnels
// whose files changed.

// tunnelSet is where the daemon's tunnels come from.
type tunnelSet struct {
	dir   string   // -d
	files []string // -c, repeated
}

// load reads the set: the daemon-wide settings and the tunnels, checked
// together (config.CheckSet).
func (s tunnelSet) load() (config.Daemon, []*config.Config, error) {
	if s.dir != "" {
		return config.LoadDir(s.dir)
	}
	var cs []*config.Config
	var errs []error
	for _, p := range s.files {
		c, err := config.Load(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cs = append(cs, c)
	}
	if len(errs) > 0 {
		return config.Daemon{}, nil, errors.Join(errs...)
	}
	if err := config.CheckSet(cs); err != nil {
		return config.Daemon{}, nil, err
	}
	// Several -c: the first file's daemon-wide sections are the daemon's.
	d := cs[0].Daemon()
	if d.ControlSocket == "/run/gresec/"+cs[0].Interface+".sock" {
		d.ControlSocket = config.DefaultDaemonSocket
	}
	return d, cs, nil
}

// tunnelName names a tunnel by its file: "hub-a" for tunnels.d/hub-a.toml.
func tunnelName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".toml")
}

// member is one running tunnel of the daemon.
type member struct {
	name    string
	t       *tunnel.Tunnel
	cfg     config.Config // what runs, its static keys cleared
	digests config.SecretDigests
	cancel  context.CancelFunc
	done    chan struct{}
}

type daemon struct {
	log   *zap.Logger // the daemon's own lines, sampled
	base  *zap.Logger // unsampled: each tunnel samples its own (sampled)
	level zap.AtomicLevel
	socks *demux.Sockets
	set   tunnelSet
	dcfg  config.Daemon
	ctx   context.Context

	mu      sync.Mutex
	members map[string]*member // by file path
	failed  chan error         // a tunnel that stopped on its own
}

func runDaemon(set tunnelSet) error {
	protectSecrets()
	oneProcUnlessSet()
	dcfg, cfgs, err := set.load()
	if err != nil {
		return err
	}
	log, level, err := newLogger(dcfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()

	ctl, err := control.Listen(dcfg.ControlSocket)
	if err != nil {
		return err
	}
	defer ctl.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &daemon{log: sampled(log), base: log, level: level, socks: tunnel.NewSockets(), set: set, dcfg: dcfg, ctx: ctx,
		members: map[string]*member{}, failed: make(chan error, 1)}
	defer d.socks.Close()
	defer d.stopAll()

	for _, c := range cfgs {
		if err := d.start(c); err != nil {
			return err
		}
	}

	var metricsDone func() error
	if dcfg.MetricsListen.IsValid() {
		if metricsDone, err = metrics.ServeMany(ctx, dcfg.MetricsListen, d.statuses); err != nil {
			return fmt.Errorf("metrics.listen: %w", err)
		}
	}
	if err := dropPrivileges(log, dcfg.User); err != nil {
		return err
	}
	go ctl.Serve(d.answer)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			sdNotify("RELOADING=1")
			d.reload()
			sdNotify("READY=1")
		}
	}()

	sdNotify(fmt.Sprintf("READY=1\nSTATUS=%d tunnels up", len(cfgs)))
	log.Info("daemon up", zap.Int("tunnels", len(cfgs)), zap.String("control", dcfg.ControlSocket))
	<-ctx.Done()
	sdNotify("STOPPING=1")
	d.stopAll()
	if metricsDone != nil {
		if merr := metricsDone(); merr != nil {
			return merr
		}
	}
	log.Info("stopped on signal; interfaces removed")
	return nil
}

// dropPrivileges is up's: to daemon.user, or to the kept capabilities.
func dropPrivileges(log *zap.Logger, user string) error {
	switch {
	case user != "":
		if err := privdrop.To(user, keptCaps...); err != nil {
			return err
		}
		log.Info("dropped privileges", zap.String("user", user), zap.String("capabilities", privdrop.Describe(keptCaps...)))
	case os.Geteuid() != 0:
		if err := privdrop.Limit(keptCaps...); err != nil {
			return err
		}
		log.Info("dropped capabilities", zap.Int("uid", os.Geteuid()), zap.String("capabilities", privdrop.Describe(keptCaps...)))
	}
	return nil
}

// start brings up the tunnel of c and runs it until it is stopped. A
// tunnel that fails later is logged and removed; the others go on.
func (d *daemon) start(c *config.Config) error {
	name := tunnelName(c.Path)
	log := sampled(d.base.With(zap.String("tunnel", name), zap.String("interface", c.Interface)))
	t, err := tunnel.NewShared(c, log, d.socks)
	if err != nil {
		return err
	}
	m := &member{name: name, t: t, cfg: *c, digests: c.Digests(), done: make(chan struct{})}
	clear(c.Static.KeyIn)
	clear(c.Static.KeyOut)
	ctx, cancel := context.WithCancel(d.ctx)
	m.cancel = cancel
	d.mu.Lock()
	d.members[c.Path] = m
	d.mu.Unlock()
	go func() {
		defer close(m.done)
		err := t.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Error("tunnel failed; the others go on", zap.Error(err))
		d.mu.Lock()
		if d.members[c.Path] == m {
			delete(d.members, c.Path)
		}
		d.mu.Unlock()
	}()
	log.Info("tunnel up", zap.Stringer("local", c.Local), zap.String("remote", c.RemoteText()),
		zap.String("keying", string(c.Keying)), zap.Int("mtu", c.MTU))
	return nil
}

// stop ends one tunnel and waits until its interface is gone.
func (d *daemon) stop(path string) {
	d.mu.Lock()
	m := d.members[path]
	delete(d.members, path)
	d.mu.Unlock()
	if m == nil {
		return
	}
	m.cancel()
	<-m.done
	d.log.Info("tunnel stopped", zap.String("tunnel", m.name), zap.String("interface", m.cfg.Interface))
}

func (d *daemon) stopAll() {
	d.mu.Lock()
	var paths []string
	for p := range d.members {
		paths = append(paths, p)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range paths {
		wg.Add(1)
		go func() { defer wg.Done(); d.stop(p) }()
	}
	wg.Wait()
}

// reload re-reads the set. An invalid set is refused as a whole and the
// running tunnels stay. Otherwise tunnels whose files are gone stop, new
// ones start, and changed ones take their change: in place when they can
// (tunnel.Reload), else that tunnel alone restarts. Unchanged tunnels are
// not touched: their SAs stay.
func (d *daemon) reload() {
	dcfg, cfgs, err := d.set.load()
	if err != nil {
		d.log.Error("reload refused: invalid configuration; still running the previous one", zap.Error(err))
		return
	}
	if l, err := zapcore.ParseLevel(dcfg.LogLevel); err == nil {
		d.level.SetLevel(l)
	}
	if dcfg.ControlSocket != d.dcfg.ControlSocket || dcfg.MetricsListen != d.dcfg.MetricsListen || dcfg.User != d.dcfg.User {
		d.log.Warn("reload: control.socket, metrics.listen and daemon.user need a restart; keeping the running ones")
	}
	next := map[string]*config.Config{}
	for _, c := range cfgs {
		next[c.Path] = c
	}
	d.mu.Lock()
	var gone, changed []string
	for p, m := range d.members {
		c, ok := next[p]
		if !ok {
			gone = append(gone, p)
			continue
		}
		if len(config.Diff(&m.cfg, m.digests, c)) > 0 {
			changed = append(changed, p)
		} else {
			delete(next, p) // unchanged: not touched
		}
	}
	d.mu.Unlock()
	sort.Strings(gone)
	for _, p := range gone {
		d.stop(p)
	}
	for _, p := range changed {
		d.change(next[p])
		delete(next, p)
	}
	var added []string
	for p := range next {
		added = append(added, p)
	}
	sort.Strings(added)
	for _, p := range added {
		if err := d.start(next[p]); err != nil {
			d.log.Error("reload: tunnel not started", zap.String("tunnel", tunnelName(p)), zap.Error(err))
		}
	}
	d.log.Info("reload done", zap.Int("stopped", len(gone)), zap.Int("changed", len(changed)), zap.Int("started", len(added)))
}

// change applies a changed file to its running tunnel: in place, or by
// restarting that tunnel when only a restart can apply it.
func (d *daemon) change(c *config.Config) {
	d.mu.Lock()
	m := d.members[c.Path]
	d.mu.Unlock()
	if m == nil {
		return
	}
	changes := config.Diff(&m.cfg, m.digests, c)
	if err := m.t.Reload(c, changes); err == nil {
		for _, ch := range changes {
			d.log.Info("reload: changed", zap.String("tunnel", m.name), zap.String("key", ch.Key()), zap.String("old", ch.Old), zap.String("new", ch.New))
		}
		d.mu.Lock()
		m.digests = c.Digests()
		clear(c.Static.KeyIn)
		clear(c.Static.KeyOut)
		m.cfg = *c
		d.mu.Unlock()
		return
	}
	d.log.Info("reload: restarting the tunnel for its change", zap.String("tunnel", m.name))
	d.stop(c.Path)
	if err := d.start(c); err != nil {
		d.log.Error("reload: tunnel not restarted", zap.String("tunnel", m.name), zap.Error(err))
	}
}

// statuses are every tunnel's, in name order.
func (d *daemon) statuses() []tunnel.Status {
	d.mu.Lock()
	ms := make([]*member, 0, len(d.members))
	for _, m := range d.members {
		ms = append(ms, m)
	}
	d.mu.Unlock()
	sort.Slice(ms, func(i, j int) bool { return ms[i].name < ms[j].name })
	out := make([]tunnel.Status, len(ms))
	for i, m := range ms {
		out[i] = m.t.Status()
		out[i].Name = m.name
	}
	return out
}

func (d *daemon) answer(cmd string) (any, error) {
	switch cmd {
	case "status":
		st := tunnel.DaemonStatus{Tunnels: d.statuses()}
		st.Malformed, st.UnknownSPI, st.UnroutedIKE = d.socks.Stats()
		st.IKESendFull = d.socks.IKESendFull()
		return st, nil
	case "keys":
		var k tunnel.KeyExport
		d.mu.Lock()
		for _, m := range d.members {
			x := m.t.Keys()
			k.ESP = append(k.ESP, x.ESP...)
			k.IKE = append(k.IKE, x.IKE...)
		}
		d.mu.Unlock()
		return k, nil
	}
	return nil, fmt.Errorf("unknown command %q; expected \"status\" or \"keys\"", cmd)
}
