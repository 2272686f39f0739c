// Package metrics serves the counters of a daemon's tunnels to Prometheus.
//
// Nothing is counted twice: at each scrape the collector takes one
// tunnel.Status snapshot, the same one `gresec status` prints, and turns it
// into metrics, so the two can never disagree and the data plane carries
// no extra cost for being observed.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/ikev1"
	"github.com/gresec/gresec/tunnel"
)

const ns = "gresec"

// Source is where the collector reads the tunnel's state.
type Source func() tunnel.Status

// Many is where the collector reads the state of a daemon's tunnels. Every
// metric has a `tunnel` label (the status's Name, else its interface).
type Many func() []tunnel.Status

func one(src Source) Many { return func() []tunnel.Status { return []tunnel.Status{src()} } }

type desc struct {
	info, up, uptime                               *prometheus.Desc
	packets, bytes, drops, readErrors              *prometheus.Desc
	ikeState, ikeAge, ikeRekeyIn, ikeChildren      *prometheus.Desc
	ikeMessages, ikeExchanges, ikeRetransmits      *prometheus.Desc
	ikeDropped, ikeAuthFailures, ikeRekeys, ikeDPD *prometheus.Desc
	ikeInvalidSyntax, ikeBadTransitions, ikeHalf   *prometheus.Desc
	ikeFragments, ikeReassembled                   *prometheus.Desc
	saPackets, saBytes, saAge, saDrops             *prometheus.Desc
	childRekeyIn, childBytesLeft                   *prometheus.Desc
	keepaliveUp, keepaliveDowns                    *prometheus.Desc
	keepalivesSent, keepalivesReplied              *prometheus.Desc
	keepalivesReflected                            *prometheus.Desc
	natKeepalives, natRebinds, natDetected, natUDP *prometheus.Desc
	v1Phase1, v1Phase2, v1Exchanges, v1Messages    *prometheus.Desc
	v1Retransmits, v1DPD, v1Dropped                *prometheus.Desc
}

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, append([]string{"tunnel"}, labels...), nil)
}

// collector turns one Status snapshot into metrics per scrape.
type collector struct {
	src Many
	d   desc
}

// NewCollector returns a prometheus.Collector over src.
func NewCollector(src Source) prometheus.Collector { return NewManyCollector(one(src)) }

// NewManyCollector returns a prometheus.Collector over the tunnels of src.
func NewManyCollector(src Many) prometheus.Collector {
	return &collector{src: src, d: desc{
		info:                newDesc("tunnel_info", "The tunnel's configuration; the value is always 1.", "interface", "local", "remote", "protocol", "keying"),
		up:                  newDesc("tunnel_up", "1 when the tunnel can send: plain GRE, or an outbound ESP SA is installed.", "interface"),
		uptime:              newDesc("tunnel_uptime_seconds", "Seconds since the tunnel started.", "interface"),
		packets:             newDesc("inner_packets_total", "Inner packets that crossed the tunnel.", "interface", "direction"),
		bytes:               newDesc("inner_bytes_total", "Inner bytes that crossed the tunnel.", "interface", "direction"),
		drops:               newDesc("drops_total", "Packets dropped, by reason.", "interface", "reason"),
		readErrors:          newDesc("read_errors_total", "Failed TUN or socket reads.", "interface"),
		ikeState:            newDesc("ike_sa_state", "1 for the IKE SA's current state.", "interface", "state"),
		ikeAge:              newDesc("ike_sa_age_seconds", "Seconds since the IKE SA was established.", "interface"),
		ikeRekeyIn:          newDesc("ike_sa_rekey_in_seconds", "Seconds until the IKE SA is rekeyed.", "interface"),
		ikeChildren:         newDesc("ike_child_sas", "CHILD_SAs installed.", "interface"),
		ikeMessages:         newDesc("ike_messages_total", "IKE datagrams, by direction.", "interface", "direction"),
		ikeExchanges:        newDesc("ike_exchanges_total", "IKE exchanges completed, by type, who initiated and result.", "interface", "exchange", "initiator", "result"),
		ikeRetransmits:      newDesc("ike_retransmits_total", "IKE requests sent again for want of an answer.", "interface"),
		ikeDropped:          newDesc("ike_dropped_total", "IKE datagrams read but not processed, by reason (unknown_source, queue_full, malformed, integrity, ...).", "interface", "reason"),
		ikeAuthFailures:     newDesc("ike_auth_failures_total", "IKE_AUTH exchanges that failed authentication.", "interface"),
		ikeRekeys:           newDesc("ike_rekeys_total", "IKE and CHILD SA rekeys completed.", "interface"),
		ikeDPD:              newDesc("ike_dpd_failures_total", "Liveness checks the peer did not answer.", "interface"),
		ikeInvalidSyntax:    newDesc("ike_invalid_syntax_total", "IKE requests that decrypted but did not parse (answered INVALID_SYNTAX).", "interface"),
		ikeBadTransitions:   newDesc("ike_bad_transitions_total", "Invalid IKE or CHILD SA state changes: bugs, to be reported.", "interface"),
		ikeHalf:             newDesc("ike_half_open_sas", "Responder IKE SAs awaiting IKE_AUTH.", "interface"),
		ikeFragments:        newDesc("ike_fragments_total", "IKE fragments (RFC 7383), by direction: sent (retransmissions included), and received authentic.", "interface", "direction"),
		ikeReassembled:      newDesc("ike_fragments_reassembled_total", "IKE messages reassembled from fragments.", "interface"),
		saPackets:           newDesc("esp_sa_packets_total", "Packets carried by an installed ESP SA.", "interface", "direction", "spi"),
		saBytes:             newDesc("esp_sa_bytes_total", "Payload bytes carried by an installed ESP SA.", "interface", "direction", "spi"),
		saAge:               newDesc("esp_sa_age_seconds", "Seconds since an ESP SA was installed.", "interface", "direction", "spi"),
		saDrops:             newDesc("esp_sa_drops_total", "Packets an inbound ESP SA refused, by reason.", "interface", "spi", "reason"),
		childRekeyIn:        newDesc("child_sa_rekey_in_seconds", "Seconds until a CHILD_SA is rekeyed by time.", "interface", "spi_in"),
		childBytesLeft:      newDesc("child_sa_bytes_left", "Bytes a CHILD_SA may still carry before its byte rekey.", "interface", "spi_in"),
		keepaliveUp:         newDesc("keepalive_up", "1 while GRE keepalives come back (the interface has carrier), 0 while they do not; absent when keepalives are off.", "interface"),
		keepaliveDowns:      newDesc("keepalive_downs_total", "Times the interface lost carrier because keepalives went unanswered.", "interface"),
		keepalivesSent:      newDesc("keepalives_sent_total", "GRE keepalives sent.", "interface"),
		keepalivesReplied:   newDesc("keepalives_replied_total", "GRE keepalives sent that came back.", "interface"),
		keepalivesReflected: newDesc("keepalives_reflected_total", "The peer's GRE keepalives sent back to it.", "interface"),
		natKeepalives:       newDesc("ike_nat_keepalives_total", "NAT keepalives sent (RFC 3948 §2.3).", "interface"),
		natRebinds:          newDesc("ike_nat_rebinds_total", "Times the peer's NAT made a new mapping that we followed.", "interface"),
		natDetected:         newDesc("ike_nat_detected", "1 when NAT detection found a NAT on that side (local: in front of us; peer: in front of the peer).", "interface", "side"),
		natUDP:              newDesc("ike_esp_in_udp", "1 when the CHILD_SAs carry ESP in UDP (RFC 3948), 0 for raw ESP.", "interface"),
		v1Phase1:            newDesc("ikev1_phase1_sas", "IKEv1 phase 1 (ISAKMP) SAs, by state (MM_NO_STATE, MM_SA_SETUP, MM_KEY_EXCH, QM_IDLE).", "interface", "state"),
		v1Phase2:            newDesc("ikev1_phase2_sas", "IKEv1 phase 2 (IPsec) SAs installed.", "interface"),
		v1Exchanges:         newDesc("ikev1_exchanges_total", "IKEv1 Main and Quick Modes ended, by who initiated and result (ok, failed, timeout).", "interface", "exchange", "initiator", "result"),
		v1Messages:          newDesc("ikev1_messages_received_total", "IKEv1 datagrams received.", "interface"),
		v1Retransmits:       newDesc("ikev1_retransmits_total", "IKEv1 requests sent again for want of an answer.", "interface"),
		v1DPD:               newDesc("ikev1_dpd_failures_total", "Times the IKEv1 peer was declared dead (RFC 3706).", "interface"),
		v1Dropped:           newDesc("ikev1_dropped_total", "IKEv1 datagrams read but not processed, by reason.", "interface", "reason"),
	}}
}

// Describe sends nothing: the collector is unchecked, because the SA
// labels come and go with rekeys.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.src() {
		c.collect(ch, &s)
	}
}

// collect sends one tunnel's metrics.
func (c *collector) collect(ch chan<- prometheus.Metric, s *tunnel.Status) {
	d := &c.d
	name, i := s.Name, s.Interface
	if name == "" {
		name = i
	}
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, append([]string{name, i}, labels...)...)
	}
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), append([]string{name, i}, labels...)...)
	}

	gauge(d.info, 1, s.Local, s.Remote, s.Protocol, s.Keying)
	up := 0.0
	if s.Protocol == "gre" || s.Outbound != nil {
		up = 1
	}
	gauge(d.up, up)
	gauge(d.uptime, float64(s.UptimeSeconds))
	counter(d.packets, s.Inner.TxPackets, "tx")
	counter(d.packets, s.Inner.RxPackets, "rx")
	counter(d.bytes, s.Inner.TxBytes, "tx")
	counter(d.bytes, s.Inner.RxBytes, "rx")
	for reason, n := range s.Drops {
		counter(d.drops, n, reason)
	}
	counter(d.readErrors, s.ReadErrors)
	if ka := s.Keepalive; ka != nil {
		if ka.State != "off" {
			up := 0.0
			if ka.State == "up" {
				up = 1
			}
			gauge(d.keepaliveUp, up)
		}
		counter(d.keepaliveDowns, ka.Downs)
		counter(d.keepalivesSent, ka.Sent)
		counter(d.keepalivesReplied, ka.Replied)
		counter(d.keepalivesReflected, ka.Reflected)
	}

	if o := s.Outbound; o != nil {
		counter(d.saPackets, o.Packets, "out", o.SPI)
		counter(d.saBytes, o.Bytes, "out", o.SPI)
		gauge(d.saAge, float64(o.AgeSeconds), "out", o.SPI)
	}
	for _, in := range s.Inbound {
		counter(d.saPackets, in.Packets, "in", in.SPI)
		counter(d.saBytes, in.Bytes, "in", in.SPI)
		gauge(d.saAge, float64(in.AgeSeconds), "in", in.SPI)
		for reason, n := range in.Drops {
			counter(d.saDrops, n, in.SPI, reason)
		}
	}

	c.collectIKEv1(s.IKEv1, gauge, counter)
	k := s.IKE
	if k == nil {
		return
	}
	for _, st := range ike.States() {
		v := 0.0
		if k.State == st {
			v = 1
		}
		gauge(d.ikeState, v, st.String())
	}
	if k.State == ike.StateEstablished {
		gauge(d.ikeAge, float64(k.AgeSeconds))
		if k.RekeyInSeconds > 0 {
			gauge(d.ikeRekeyIn, float64(k.RekeyInSeconds))
		}
	}
	gauge(d.ikeChildren, float64(k.Children))
	gauge(d.ikeHalf, float64(k.HalfOpen))
	counter(d.ikeMessages, k.Counters.Received, "received")
	counter(d.ikeMessages, k.Counters.Sent, "sent")
	counter(d.ikeRetransmits, k.Counters.Retransmits)
	for reason, n := range k.Counters.Drops {
		counter(d.ikeDropped, n, reason)
	}
	counter(d.ikeAuthFailures, k.Counters.AuthFailures)
	counter(d.ikeRekeys, k.Counters.Rekeys)
	counter(d.ikeDPD, k.Counters.DPDFailures)
	counter(d.ikeInvalidSyntax, k.Counters.InvalidSyntax)
	counter(d.ikeBadTransitions, k.Counters.BadTransitions)
	counter(d.ikeFragments, k.Counters.FragmentsSent, "sent")
	counter(d.ikeFragments, k.Counters.FragmentsReceived, "received")
	counter(d.ikeReassembled, k.Counters.FragmentsReassembled)
	counter(d.natKeepalives, k.Counters.NATKeepalives)
	counter(d.natRebinds, k.Counters.NATRebinds)
	gauge(d.natDetected, b2f(k.NAT.NATHere), "local")
	gauge(d.natDetected, b2f(k.NAT.NATThere), "peer")
	gauge(d.natUDP, b2f(k.NAT.Encap == "udp"))
	for _, e := range k.Exchanges {
		counter(d.ikeExchanges, e.Count, e.Exchange, strconv.FormatBool(e.Initiated), e.Result)
	}
	for _, ch := range k.ChildSAs {
		if ch.RekeyInSeconds > 0 {
			gauge(d.childRekeyIn, float64(ch.RekeyInSeconds), ch.SPIIn)
		}
		if ch.LifetimeBytes > 0 {
			gauge(d.childBytesLeft, float64(ch.BytesLeft), ch.SPIIn)
		}
	}
}

// Handler is the /metrics handler: the tunnel's metrics plus the Go
// runtime's and the process's own.
func Handler(src Source) http.Handler { return HandlerMany(one(src)) }

// HandlerMany is Handler for the tunnels of a daemon.
func HandlerMany(src Many) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewManyCollector(src), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Serve listens on addr and serves /metrics until ctx ends. The listener
// is opened before Serve returns its first error, so a port in use is
// reported at start-up, not lost in a goroutine.
func Serve(ctx context.Context, addr netip.AddrPort, src Source) (wait func() error, err error) {
	return ServeMany(ctx, addr, one(src))
}

// ServeMany is Serve for the tunnels of a daemon.
func ServeMany(ctx context.Context, addr netip.AddrPort, src Many) (wait func() error, err error) {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", HandlerMany(src))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	return func() error {
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ikev1States are the phase 1 states, as IOS names them.
var ikev1States = []string{"MM_NO_STATE", "MM_SA_SETUP", "MM_KEY_EXCH", "QM_IDLE"}

// collectIKEv1 turns the IKEv1 engine's status (keying = "ikev1") into
// metrics: SA counts by state, exchanges, DPD, and NAT traversal under the
// same names as IKEv2's (a tunnel runs one version).
func (c *collector) collectIKEv1(k *ikev1.Status, gauge func(*prometheus.Desc, float64, ...string), counter func(*prometheus.Desc, uint64, ...string)) {
	if k == nil {
		return
	}
	d := &c.d
	for _, st := range ikev1States {
		n := 0
		for _, p := range k.Phase1 {
			if p.State == st {
				n++
			}
		}
		gauge(d.v1Phase1, float64(n), st)
	}
	gauge(d.v1Phase2, float64(len(k.Phase2)))
	for _, e := range k.Exchanges {
		counter(d.v1Exchanges, e.Count, e.Exchange, strconv.FormatBool(e.Initiated), e.Result)
	}
	counter(d.v1Messages, k.Received)
	counter(d.v1Retransmits, k.Retransmits)
	counter(d.v1DPD, k.DPDFailures)
	for reason, n := range k.Drops {
		counter(d.v1Dropped, n, reason)
	}
	if n := k.NAT; n != nil {
		counter(d.natKeepalives, n.Keepalives)
		counter(d.natRebinds, n.Rebinds)
		gauge(d.natDetected, b2f(n.NATHere), "local")
		gauge(d.natDetected, b2f(n.NATThere), "peer")
		gauge(d.natUDP, b2f(n.Encap == "udp"))
	}
}
