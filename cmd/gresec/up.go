package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/control"
	"github.com/gresec/gresec/tunnel"
)

func cmdUp(args []string) error {
	fs := newFlags("up", "-c FILE")
	path := fs.String("c", "/etc/gresec/gresec.toml", "config `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	protectSecrets()

	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	log = log.With(zap.String("interface", cfg.Interface))

	ctl, err := control.Listen(cfg.ControlSocket)
	if err != nil {
		return err
	}
	defer ctl.Close()

	t, err := tunnel.New(cfg, log)
	if err != nil {
		return err
	}
	// The SAs hold their own copies; drop the config's.
	clear(cfg.Static.KeyIn)
	clear(cfg.Static.KeyOut)
	// The IKE engine keeps cfg.IKE's PSKs for as long as it runs.

	go ctl.Serve(func(cmd string) (any, error) {
		if cmd != "status" {
			return nil, fmt.Errorf("unknown command %q; expected \"status\"", cmd)
		}
		return t.Status(), nil
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("tunnel up",
		zap.Stringer("local", cfg.Local), zap.Stringer("remote", cfg.Remote),
		zap.String("keying", string(cfg.Keying)), zap.Int("mtu", cfg.MTU),
		zap.String("control", cfg.ControlSocket))
	err = t.Run(ctx)
	if err != nil {
		log.Error("tunnel failed", zap.Error(err))
		return err
	}
	log.Info("stopped on signal; interface removed")
	return nil
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	c := zap.NewProductionConfig()
	c.Level = zap.NewAtomicLevelAt(lvl)
	c.Encoding = "console"
	c.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	c.DisableStacktrace = true
	// Sampling keeps a flood of identical warnings (a failing device) from
	// drowning the log.
	return c.Build()
}

// protectSecrets keeps key material out of core dumps and away from
// ptrace by other unprivileged processes.
func protectSecrets() {
	_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
	setNotDumpable()
}
