package tunnel

import (
	"fmt"
	"time"

	"github.com/gresec/gresec/esp"
)

// Status is a snapshot of the tunnel for `gresec status`.
type Status struct {
	Interface     string            `json:"interface"`
	Local         string            `json:"local"`
	Remote        string            `json:"remote"`
	Protocol      string            `json:"protocol"` // "esp" or "gre"
	Keying        string            `json:"keying"`
	MTU           int               `json:"mtu"`
	MSSClamp      bool              `json:"mss_clamp"`
	MSS4          int               `json:"mss_ipv4,omitempty"`
	MSS6          int               `json:"mss_ipv6,omitempty"`
	UptimeSeconds int64             `json:"uptime_seconds"`
	Inner         Traffic           `json:"inner"`
	Outbound      *SAStatus         `json:"outbound_sa,omitempty"`
	Inbound       []SAStatus        `json:"inbound_sas,omitempty"`
	IKE           *IKEStatus        `json:"ike,omitempty"`
	Drops         map[string]uint64 `json:"drops"`
	ReadErrors    uint64            `json:"read_errors"`
}

// IKEStatus is the IKE SA, for keying = "ikev2".
type IKEStatus struct {
	State      string `json:"state"`
	SPIi       string `json:"spi_i,omitempty"`
	SPIr       string `json:"spi_r,omitempty"`
	Suite      string `json:"suite,omitempty"`
	ESPSuite   string `json:"esp_suite,omitempty"`
	AgeSeconds int64  `json:"age_seconds,omitempty"`
	LastError  string `json:"last_error,omitempty"`
	Children   int    `json:"children"`
}

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
}

// Status reads the counters; safe to call while the pumps run.
func (t *Tunnel) Status() Status {
	c := t.cfg
	s := Status{
		Interface:     c.Interface,
		Local:         c.Local.String(),
		Remote:        c.Remote.String(),
		Protocol:      "gre",
		Keying:        string(c.Keying),
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
		s.Drops[dropNames[d]] = t.stats.drops[d].Load()
	}
	if t.ikeReady.Load() {
		is := t.ike.Status()
		s.IKE = &IKEStatus{State: is.State, Suite: is.Suite, ESPSuite: is.ESPSuite, LastError: is.LastError, Children: len(is.Children)}
		if is.SPIi != 0 {
			s.IKE.SPIi, s.IKE.SPIr = fmt.Sprintf("%016x", is.SPIi), fmt.Sprintf("%016x", is.SPIr)
		}
		if !is.Established.IsZero() {
			s.IKE.AgeSeconds = int64(time.Since(is.Established).Seconds())
		}
	}
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
