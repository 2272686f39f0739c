package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/metrics"
	"github.com/gresec/gresec/tunnel"
)

// TestEveryIKECounterIsRendered gives every field of ike.Counters its own
// value and follows the snapshot the way it travels: ike.Status ->
// tunnel.NewIKEStatus -> the control socket's JSON -> `gresec status`
// text, and tunnel.Status -> Prometheus. Each value must come out of all
// three. A counter added to ike.Counters fails here until it is rendered
// everywhere (a counter was once lost on the way: InvalidSyntax).
func TestEveryIKECounterIsRendered(t *testing.T) {
	type want struct {
		field, key string // Go field; JSON key (or "drops.REASON", "exchanges")
		value      uint64
		text       string // what `gresec status` must print
	}
	var c ike.Counters
	var wants []want
	v := reflect.ValueOf(&c).Elem()
	next := uint64(900001) // six digits each: no value is a substring of another
	for i := range v.NumField() {
		f := v.Type().Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Type.Kind() == reflect.Uint64:
			v.Field(i).SetUint(next)
			wants = append(wants, want{f.Name, key, next, fmt.Sprint(next)})
			next++
		case f.Type == reflect.TypeOf(map[string]uint64{}) && f.Name == "Drops":
			m := map[string]uint64{}
			for _, r := range ike.DropReasons() {
				m[r.String()] = next
				wants = append(wants, want{f.Name, "drops." + r.String(), next, fmt.Sprintf("%s %d", r, next)})
				next++
			}
			v.Field(i).Set(reflect.ValueOf(m))
		case f.Type == reflect.TypeOf(map[ike.ExchangeKey]uint64{}) && f.Name == "Exchanges":
			m := map[ike.ExchangeKey]uint64{}
			for _, ours := range []bool{true, false} {
				m[ike.ExchangeKey{Exchange: "IKE_AUTH", Initiated: ours, Result: "ok"}] = next
				wants = append(wants, want{f.Name, "exchanges", next, fmt.Sprintf("IKE_AUTH ok %d", next)})
				next++
			}
			v.Field(i).Set(reflect.ValueOf(m))
		default:
			t.Fatalf("ike.Counters.%s is a %s: teach this test, tunnel/status.go, cmd/gresec/status.go and metrics how to render it",
				f.Name, f.Type)
		}
	}

	// Prometheus has a total with a per-reason breakdown as the labelled
	// metric alone (sum it in a query), so Dropped must be its sum there.
	c.Dropped = 0
	for _, n := range c.Drops {
		c.Dropped += n
	}
	sums := map[string]string{"Dropped": "gresec_ike_dropped_total"}
	for i := range wants {
		if wants[i].field == "Dropped" {
			wants[i].value, wants[i].text = c.Dropped, fmt.Sprint(c.Dropped)
		}
	}

	now := time.Now()
	st := tunnel.Status{Interface: "gre0", Protocol: "esp", Keying: "ikev2", Drops: map[string]uint64{},
		IKE: tunnel.NewIKEStatus(ike.Status{State: ike.StateEstablished, SPIi: 1, SPIr: 2, Established: now, Counters: c}, now, nil)}

	// JSON, as the control socket sends it.
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var js struct {
		IKE struct {
			Counters  map[string]json.RawMessage `json:"counters"`
			Exchanges []ike.ExchangeCount        `json:"exchanges"`
		} `json:"ike"`
	}
	if err := json.Unmarshal(raw, &js); err != nil {
		t.Fatal(err)
	}
	jsonHas := func(w want) bool {
		switch {
		case w.key == "exchanges":
			for _, x := range js.IKE.Exchanges {
				if x.Count == w.value {
					return true
				}
			}
			return false
		case strings.HasPrefix(w.key, "drops."):
			var drops map[string]uint64
			json.Unmarshal(js.IKE.Counters["drops"], &drops)
			return drops[strings.TrimPrefix(w.key, "drops.")] == w.value
		}
		return string(js.IKE.Counters[w.key]) == fmt.Sprint(w.value)
	}

	// Text, from that JSON, as `gresec status` prints it.
	var back tunnel.Status
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	printStatus(&text, &back)

	// Prometheus, from the snapshot in process.
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(func() tunnel.Status { return st }))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	promHas := func(field string, value uint64) bool {
		for _, fam := range families {
			if name, ok := sums[field]; ok {
				if fam.GetName() != name {
					continue
				}
				sum := 0.0
				for _, m := range fam.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
				return sum == float64(value)
			}
			if !strings.HasPrefix(fam.GetName(), "gresec_ike_") {
				continue
			}
			for _, m := range fam.GetMetric() {
				if m.GetCounter().GetValue() == float64(value) || m.GetGauge().GetValue() == float64(value) {
					return true
				}
			}
		}
		return false
	}

	for _, w := range wants {
		if !jsonHas(w) {
			t.Errorf("ike.Counters.%s (%s = %d) is not in the JSON status: %s", w.field, w.key, w.value, raw)
		}
		if !strings.Contains(text.String(), w.text) {
			t.Errorf("ike.Counters.%s (%d) is not in `gresec status`: want %q in\n%s", w.field, w.value, w.text, text.String())
		}
		if !promHas(w.field, w.value) {
			t.Errorf("ike.Counters.%s (%d) is in no gresec_ike_* metric", w.field, w.value)
		}
	}
}

// TestStatusShowsNAT: the NAT-T line names the encapsulation, the ports
// and the side the NAT is on, from the engine's one NAT status.
func TestStatusShowsNAT(t *testing.T) {
	for _, c := range []struct {
		nat  ike.NATStatus
		want string
	}{
		{ike.NATStatus{Encap: "udp", Mode: "auto", LocalPort: 4500, RemotePort: 40001, Peer: "198.18.0.1:40001", NATThere: true},
			"nat-t: esp in udp  udp_encap auto  ike port 4500 -> 198.18.0.1:40001  nat: in front of the peer"},
		{ike.NATStatus{Encap: "udp", Mode: "auto", LocalPort: 4500, RemotePort: 4500, Peer: "198.18.0.2:4500", NATHere: true},
			"nat: in front of us"},
		{ike.NATStatus{Encap: "udp", Mode: "always", LocalPort: 4500, RemotePort: 4500, Peer: "198.18.0.2:4500", NATThere: true, Faked: true},
			"nat: in front of the peer, faked (udp_encap always)"},
		{ike.NATStatus{Encap: "none", Mode: "auto", LocalPort: 500, RemotePort: 500, Peer: "198.18.0.2:500"},
			"nat-t: raw esp (ip protocol 50)  udp_encap auto  ike port 500 -> 198.18.0.2:500  nat: none"},
	} {
		var b strings.Builder
		st := tunnel.Status{Interface: "gre0", Keying: "ikev2", IKE: &tunnel.IKEStatus{State: ike.StateEstablished, NAT: c.nat}}
		printStatus(&b, &st)
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("%+v: want %q in\n%s", c.nat, c.want, b.String())
		}
	}
}

// TestStatusUDPLineWhileRaw: IKE's NAT-T socket with ESP still raw shows
// no "port 4500 -> 0" (no peer port exists yet), and ESP in UDP shows both
// ports.
func TestStatusUDPLineWhileRaw(t *testing.T) {
	for _, c := range []struct {
		u         tunnel.UDPEncapStatus
		want, not string
	}{
		{tunnel.UDPEncapStatus{LocalPort: 4500}, "   udp 4500: open for NAT traversal, esp not in udp (raw)", "-> 0"},
		{tunnel.UDPEncapStatus{LocalPort: 4500, RemotePort: 40001, GSO: true}, "   esp in udp: port 4500 -> 40001  gso on", "open for NAT traversal"},
	} {
		var b strings.Builder
		st := tunnel.Status{Interface: "gre0", Keying: "ikev2", UDPEncap: &c.u}
		printStatus(&b, &st)
		if !strings.Contains(b.String(), c.want) || strings.Contains(b.String(), c.not) {
			t.Errorf("%+v: want %q and no %q in\n%s", c.u, c.want, c.not, b.String())
		}
	}
}
