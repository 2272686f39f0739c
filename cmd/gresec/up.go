package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/control"
	"github.com/gresec/gresec/metrics"
	"github.com/gresec/gresec/privdrop"
	"github.com/gresec/gresec/tunnel"
)

func cmdUp(args []string) error {
	fs := newFlags("up", "[-c FILE]... | -d DIR")
	var files fileList
	fs.Var(&files, "c", "config `file` of a tunnel (default /etc/gresec/gresec.toml); repeat for several tunnels in one daemon")
	dir := fs.String("d", "", "`directory` of tunnels: every *.toml but gresec.toml, which holds the daemon-wide sections")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *dir != "" && len(files) > 0:
		return fmt.Errorf("-c and -d exclude each other")
	case *dir != "":
		return runDaemon(tunnelSet{dir: *dir})
	case len(files) > 1:
		return runDaemon(tunnelSet{files: files})
	case len(files) == 0:
		files = fileList{"/etc/gresec/gresec.toml"}
	}
	path := &files[0]
	protectSecrets()
	oneProcUnlessSet()

	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log, level, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	log = sampled(log.With(zap.String("interface", cfg.Interface)))

	ctl, err := control.Listen(cfg.ControlSocket)
	if err != nil {
		return err
	}
	defer ctl.Close()

	t, err := tunnel.New(cfg, log)
	if err != nil {
		return err
	}
	// The SAs hold their own copies; drop the config's, keeping digests so
	// a reload can tell whether the keys changed.
	digests := cfg.Digests()
	clear(cfg.Static.KeyIn)
	clear(cfg.Static.KeyOut)
	// The IKE engine keeps cfg.IKE's PSKs for as long as it runs.

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var metricsDone func() error
	if cfg.MetricsListen.IsValid() {
		if metricsDone, err = metrics.Serve(ctx, cfg.MetricsListen, t.Status); err != nil {
			t.Close()
			return fmt.Errorf("%s: metrics.listen: %w", cfg.Path, err)
		}
	}

	// Everything privileged is open: the TUN device, the raw socket, UDP
	// port 500, the control and metrics sockets.
	switch {
	case cfg.User != "":
		if err := privdrop.To(cfg.User, keptCaps...); err != nil {
			t.Close()
			return err
		}
		log.Info("dropped privileges", zap.String("user", cfg.User), zap.String("capabilities", privdrop.Describe(keptCaps...)))
	case os.Geteuid() != 0:
		// Started unprivileged with capabilities (the systemd unit):
		// CAP_NET_RAW and CAP_NET_BIND_SERVICE have done their job.
		if err := privdrop.Limit(keptCaps...); err != nil {
			t.Close()
			return err
		}
		log.Info("dropped capabilities", zap.Int("uid", os.Geteuid()), zap.String("capabilities", privdrop.Describe(keptCaps...)))
	}

	go ctl.Serve(func(cmd string) (any, error) {
		switch cmd {
		case "status":
			return t.Status(), nil
		case "keys":
			return t.Keys(), nil
		}
		return nil, fmt.Errorf("unknown command %q; expected \"status\" or \"keys\"", cmd)
	})

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		// A copy: the tunnel reads cfg without locks; reloads diff against
		// this one and keep it current.
		current := *cfg
		for range hup {
			sdNotify("RELOADING=1")
			digests = reload(log, level, t, &current, digests)
			sdNotify("READY=1")
		}
	}()

	sdNotify("READY=1\nSTATUS=tunnel " + cfg.Interface + " up")
	log.Info("tunnel up",
		zap.Stringer("local", cfg.Local), zap.String("remote", cfg.RemoteText()),
		zap.String("keying", string(cfg.Keying)), zap.Int("mtu", cfg.MTU),
		zap.String("control", cfg.ControlSocket))
	err = t.Run(ctx)
	sdNotify("STOPPING=1")
	if metricsDone != nil {
		stop()
		if merr := metricsDone(); merr != nil && err == nil {
			err = merr
		}
	}
	if err != nil {
		log.Error("tunnel failed", zap.Error(err))
		return err
	}
	log.Info("stopped on signal; interface removed")
	return nil
}

// fileList is a repeatable -c.
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

// keptCaps are the capabilities gresec keeps after daemon.user: only
// CAP_NET_ADMIN, for a reload that changes the interface's addresses.
// The raw socket, UDP 500 and the TUN device are already open, and
// nothing else it does needs privilege.
var keptCaps = []int{privdrop.CapNetAdmin}

// reload re-reads the config file on SIGHUP. An invalid file, or one that
// changes what only a restart can change, is refused and the running
// configuration stays; otherwise the changes are logged and applied.
// It returns the digests of the secrets now in force.
func reload(log *zap.Logger, level zap.AtomicLevel, t *tunnel.Tunnel, running *config.Config, digests config.SecretDigests) config.SecretDigests {
	next, err := config.Load(running.Path)
	if err != nil {
		log.Error("reload refused: invalid configuration; still running the previous one", zap.Error(err))
		return digests
	}
	changes := config.Diff(running, digests, next)
	if len(changes) == 0 {
		log.Info("reload: configuration unchanged")
		return digests
	}
	if err := t.Reload(next, changes); err != nil {
		log.Error("reload refused", zap.Error(err))
		return digests
	}
	for _, c := range changes {
		log.Info("reload: changed", zap.String("key", c.Key()), zap.String("old", c.Old), zap.String("new", c.New))
	}
	if l, err := zapcore.ParseLevel(next.LogLevel); err == nil {
		level.SetLevel(l)
	}
	nd := next.Digests()
	clear(next.Static.KeyIn)
	clear(next.Static.KeyOut)
	*running = *next
	return nd
}

func newLogger(level string) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, zap.AtomicLevel{}, err
	}
	c := zap.NewProductionConfig()
	c.Level = zap.NewAtomicLevelAt(lvl)
	c.Encoding = "console"
	c.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	c.DisableStacktrace = true
	// Sampling keeps a flood of identical warnings (a failing device) from
	// drowning the log: per tunnel (sampled), since zap's sampler counts by
	// message alone, and a hub's hundred tunnels all saying "IKE SA
	// established" within a second are a hundred lines, not a flood.
	c.Sampling = nil
	l, err := c.Build()
	if err != nil {
		return nil, c.Level, err
	}
	return l, c.Level, nil
}

// sampled is l with a sampler of its own: in each second, the first 100
// lines with one message, then every 100th.
func sampled(l *zap.Logger) *zap.Logger {
	return l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, 100, 100)
	}))
}

// protectSecrets keeps key material out of core dumps and away from
// ptrace by other unprivileged processes.
func protectSecrets() {
	_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
	setNotDumpable()
}
