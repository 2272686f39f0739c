package tunnel

import (
	"fmt"
	"maps"
	"time"

	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/ikev1"
)

// Status is a snapshot of the tunnel for `gresec status`.
type Status struct {
	// Name is the tunnel's name in a daemon of many (its file's name
	// without .toml); "" for a daemon of one.
	Name          string            `json:"name,omitempty"`
	Interface     string            `json:"interface"`
	Local         string            `json:"local"`
	Remote        string            `json:"remote"`   // "any": a dynamic peer not heard from yet
	Dynamic       bool              `json:"dynamic"`  // remote = "any": the peer's address is the one it authenticated from
	Protocol      string            `json:"protocol"` // "esp" or "gre"
	Keying        string            `json:"keying"`
	Mode          string            `json:"mode,omitempty"`  // ESP mode: "transport" or "tunnel"
	Encap         string            `json:"encap,omitempty"` // "gre", "ipip" or "none"
	MTU           int               `json:"mtu"`
	MSSClamp      bool              `json:"mss_clamp"`
	MSS4          int               `json:"mss_ipv4,omitempty"`
	MSS6          int               `json:"mss_ipv6,omitempty"`
	UptimeSeconds int64             `json:"uptime_seconds"`
	Inner         Traffic           `json:"inner"`
	Outbound      *SAStatus         `json:"outbound_sa,omitempty"`
	Inbound       []SAStatus        `json:"inbound_sas,omitempty"`
	Draining      []SAStatus        `json:"draining_inbound_sas,omitempty"` // retired, still accepting the peer's last packets
	IKE           *IKEStatus        `json:"ike,omitempty"`
	IKEv1         *ikev1.Status     `json:"ikev1,omitempty"` // keying = "ikev1" (ikev1.go)
	Drops         map[string]uint64 `json:"drops"`
	ReadErrors    uint64            `json:"read_errors"`
	Keepalive     *KeepaliveStatus  `json:"keepalive,omitempty"`
	UDPEncap      *UDPEncapStatus   `json:"udp_encap,omitempty"` // ESP in UDP (udpencap.go)
}

// IKEStatus is the IKE SA, for keying = "ikev2": the engine's snapshot
// (ike.Status) with times made relative and SPIs in hex. Its counters are
// the engine's own type, so nothing the engine counts can be lost here.
type IKEStatus struct {
	State          ike.State           `json:"state"` // idle, connecting, established
	SPIi           string              `json:"spi_i,omitempty"`
	SPIr           string              `json:"spi_r,omitempty"`
	Suite          string              `json:"suite,omitempty"`
	ESPSuite       string              `json:"esp_suite,omitempty"`
	AgeSeconds     int64               `json:"age_seconds,omitempty"`
	RekeyInSeconds int64               `json:"rekey_in_seconds,omitempty"`
	LastError      string              `json:"last_error,omitempty"`
	Children       int                 `json:"children"`
	ChildSAs       []ChildSAStatus     `json:"child_sas,omitempty"`
	HalfOpen       int                 `json:"half_open"` // responder IKE SAs awaiting IKE_AUTH
	NAT            ike.NATStatus       `json:"nat"`       // NAT traversal, as the engine sees it (ike/nat.go)
	Counters       IKECounters         `json:"counters"`
	Exchanges      []ike.ExchangeCount `json:"exchanges,omitempty"` // Counters.Exchanges, sorted
}

// ChildSAStatus is one CHILD_SA's lifetime, like IOS's "sa timing:
// remaining key lifetime (k/sec)".
type ChildSAStatus struct {
	SPIIn            string `json:"spi_in"`
	SPIOut           string `json:"spi_out"`
	State            string `json:"state"` // installed, rekeying, rekeyed, redundant, deleting (ike/state.go)
	Transform        string `json:"transform"`
	AgeSeconds       int64  `json:"age_seconds"`
	RekeyInSeconds   int64  `json:"rekey_in_seconds,omitempty"`
	ExpiresInSeconds int64  `json:"expires_in_seconds,omitempty"`
	LifetimeBytes    uint64 `json:"lifetime_bytes,omitempty"`
	BytesLeft        uint64 `json:"bytes_left,omitempty"`
}

// IKECounters count IKE datagrams and events: the engine's counters, with
// the datagrams read while no engine ran added in (ike.DropNoEngine).
type IKECounters = ike.Counters

// ExchangeCount is how many exchanges of one kind ended one way.
type ExchangeCount = ike.ExchangeCount

// Traffic counts inner packets crossing the tunnel.
type Traffic struct {
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
}

// SAStatus is one ESP SA.
type SAStatus struct {
	SPI          string            `json:"spi"`
	Transform    string            `json:"transform"`
	Packets      uint64            `json:"packets"`
	Bytes        uint64            `json:"bytes"`
	Sequence     uint64            `json:"sequence"` // outbound: last sent; inbound: highest accepted
	ReplayWindow int               `json:"replay_window,omitempty"`
	AgeSeconds   int64             `json:"age_seconds"`
	Drops        map[string]uint64 `json:"drops,omitempty"`
	// RemovedInSeconds is, for a draining inbound SA, when it goes.
	RemovedInSeconds int64 `json:"removed_in_seconds,omitempty"`
}

// Status reads the counters; safe to call while the pumps run.
func (t *Tunnel) Status() Status {
	c := t.cfg
	s := Status{
		Interface:     c.Interface,
		Local:         c.Local.String(),
		Remote:        remoteText(t.remoteAddr()),
		Dynamic:       c.AnyRemote,
		Protocol:      "gre",
		Keying:        string(c.Keying),
		Mode:          string(c.Mode),
		Encap:         string(c.Encap),
		MTU:           c.MTU,
		MSSClamp:      c.MSSClamp,
		UptimeSeconds: int64(time.Since(t.started).Seconds()),
		Inner: Traffic{
			TxPackets: t.stats.txPackets.Load(), TxBytes: t.stats.txBytes.Load(),
			RxPackets: t.stats.rxPackets.Load(), RxBytes: t.stats.rxBytes.Load(),
		},
		Drops:      map[string]uint64{},
		ReadErrors: t.stats.readErrors.Load(),
	}
	if c.MSSClamp {
		s.MSS4, s.MSS6 = c.MSS4(), c.MSS6()
	}
	for d := range numDrops {
		s.Drops[d.String()] = t.stats.drops[d].Load()
	}
	if e := t.ike.Load(); e != nil {
		s.IKE = t.ikeStatus(e.Status(), time.Now())
	}
	s.IKEv1 = t.IKEv1Status()
	s.Keepalive = t.ka.status(time.Now())
	s.UDPEncap = t.udpEncapStatus()
	if t.sadb != nil {
		s.Protocol = "esp"
		for r, n := range t.sadb.Drops() {
			s.Drops["esp_"+r] = n
		}
		if sa := t.sadb.Outbound(); sa != nil {
			o := saStatus(sa)
			o.ReplayWindow = 0
			s.Outbound = &o
		}
		for _, sa := range t.sadb.Inbound() {
			s.Inbound = append(s.Inbound, saStatus(sa))
		}
		now := time.Now()
		for _, d := range t.sadb.Draining() {
			ds := saStatus(d.SA)
			ds.RemovedInSeconds = secondsUntil(d.Until, now)
			s.Draining = append(s.Draining, ds)
		}
	}
	return s
}

func saStatus(sa *esp.SA) SAStatus {
	st := sa.Stats()
	return SAStatus{
		SPI:          fmt.Sprintf("0x%08x", sa.SPI()),
		Transform:    sa.Transform(),
		Packets:      st.Packets,
		Bytes:        st.Bytes,
		Sequence:     st.Sequence,
		ReplayWindow: st.ReplayWindow,
		AgeSeconds:   int64(time.Since(st.Created).Seconds()),
		Drops:        st.Drops,
	}
}

func (t *Tunnel) ikeStatus(is ike.Status, now time.Time) *IKEStatus {
	k := NewIKEStatus(is, now, t.ChildBytes)
	if t.ikeSock != nil || t.shared != nil {
		// Read while no engine ran (start, reload): dropped before any.
		var n uint64
		if t.ikeSock != nil {
			n = t.ikeSock.orphans.Load()
		} else {
			n = t.shared.orphans.Load()
		}
		k.Counters.Received += n
		k.Counters.Dropped += n
		if k.Counters.Drops == nil {
			k.Counters.Drops = map[string]uint64{}
		}
		k.Counters.Drops[ike.DropNoEngine.String()] += n
	}
	return k
}

// NewIKEStatus renders the engine's snapshot at now. childBytes (nil:
// none) reports a CHILD_SA's traffic, for the bytes left of its lifetime.
func NewIKEStatus(is ike.Status, now time.Time, childBytes func(spiIn uint32) (in, out uint64)) *IKEStatus {
	k := &IKEStatus{State: is.State, Suite: is.Suite, ESPSuite: is.ESPSuite, LastError: is.LastError, Children: len(is.Children),
		HalfOpen: is.HalfOpen, NAT: is.NAT, Counters: is.Counters, Exchanges: is.Counters.ExchangeCounts()}
	if is.SPIi != 0 {
		k.SPIi, k.SPIr = fmt.Sprintf("%016x", is.SPIi), fmt.Sprintf("%016x", is.SPIr)
	}
	if !is.Established.IsZero() {
		k.AgeSeconds = int64(now.Sub(is.Established).Seconds())
	}
	if !is.RekeyAt.IsZero() {
		k.RekeyInSeconds = secondsUntil(is.RekeyAt, now)
	}
	k.Counters.Drops = maps.Clone(is.Counters.Drops) // the tunnel adds to it
	// Exchanges travel as the sorted list, in process as in JSON, so that
	// every renderer reads the same field.
	k.Counters.Exchanges = nil
	for _, ch := range is.Children {
		cs := ChildSAStatus{SPIIn: fmt.Sprintf("0x%08x", ch.SPIIn), SPIOut: fmt.Sprintf("0x%08x", ch.SPIOut), State: ch.State,
			Transform: ch.Transform, AgeSeconds: int64(now.Sub(ch.Installed).Seconds()), LifetimeBytes: ch.LifetimeBytes}
		if !ch.RekeyAt.IsZero() {
			cs.RekeyInSeconds = secondsUntil(ch.RekeyAt, now)
		}
		if !ch.ExpiresAt.IsZero() {
			cs.ExpiresInSeconds = secondsUntil(ch.ExpiresAt, now)
		}
		if ch.LifetimeBytes > 0 && childBytes != nil {
			// Each direction counts against the limit on its own, as
			// with IOS's per-SA "remaining key lifetime".
			in, out := childBytes(ch.SPIIn)
			if used := max(in, out); used < ch.LifetimeBytes {
				cs.BytesLeft = ch.LifetimeBytes - used
			}
		}
		k.ChildSAs = append(k.ChildSAs, cs)
	}
	return k
}

// secondsUntil is how long until t, at least 1: a due event shows as
// imminent, and 0 stays free to mean "not scheduled" (omitted in JSON).
func secondsUntil(t, now time.Time) int64 { return max(1, int64(t.Sub(now).Seconds())) }
