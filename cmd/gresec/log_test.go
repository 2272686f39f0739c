package main

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestTunnelsSampleApart: a hub's tunnels each log "IKE SA established"
// within one second; the sampler drops nothing until one tunnel floods.
func TestTunnelsSampleApart(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	base := zap.New(core)
	for n := 0; n < 150; n++ {
		sampled(base.With(zap.Int("tunnel", n))).Info("IKE SA established")
	}
	if got := logs.Len(); got != 150 {
		t.Fatalf("%d of 150 tunnels' lines logged", got)
	}
	one := sampled(base)
	for n := 0; n < 1000; n++ {
		one.Warn("TUN read failed")
	}
	if got := logs.FilterMessage("TUN read failed").Len(); got < 100 || got > 120 {
		t.Fatalf("one tunnel's flood of 1000 identical lines logged %d times, want about 110", got)
	}
}
