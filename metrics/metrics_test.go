package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gresec/gresec/ikev1"
	"github.com/gresec/gresec/tunnel"
)

func sample() tunnel.Status {
	return tunnel.Status{
		Interface: "gre0", Local: "198.18.0.1", Remote: "198.18.0.2", Protocol: "esp", Keying: "ikev2",
		UptimeSeconds: 42,
		Inner:         tunnel.Traffic{TxPackets: 10, TxBytes: 1000, RxPackets: 9, RxBytes: 900},
		Outbound:      &tunnel.SAStatus{SPI: "0x00001001", Packets: 10, Bytes: 1200, AgeSeconds: 5},
		Inbound:       []tunnel.SAStatus{{SPI: "0x00001002", Packets: 9, Bytes: 1100, Drops: map[string]uint64{"auth": 3, "replay": 1}}},
		Drops:         map[string]uint64{"esp_auth": 3, "too_big": 2},
		IKE: &tunnel.IKEStatus{State: "established", HalfOpen: 3, AgeSeconds: 30, RekeyInSeconds: 100, Children: 1,
			ChildSAs:  []tunnel.ChildSAStatus{{SPIIn: "0x00001002", RekeyInSeconds: 50, LifetimeBytes: 1000, BytesLeft: 400}},
			Counters:  tunnel.IKECounters{Received: 4, Sent: 4, Retransmits: 1, DPDFailures: 2, InvalidSyntax: 6, BadTransitions: 7},
			Exchanges: []tunnel.ExchangeCount{{Exchange: "IKE_AUTH", Initiated: true, Result: "ok", Count: 1}}},
		Keepalive: &tunnel.KeepaliveStatus{State: "down", IntervalSeconds: 10, Retries: 3, Unanswered: 4, Sent: 7, Replied: 3, Reflected: 5, Downs: 1},
	}
}

// TestCollectorLintsClean: promlint (the linter behind `promtool check
// metrics`) finds nothing in any metric the collector makes.
func TestCollectorLintsClean(t *testing.T) {
	problems, err := testutil.CollectAndLint(NewCollector(func() tunnel.Status { return sample() }))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestValuesFollowStatus: each metric carries the snapshot's number.
func TestValuesFollowStatus(t *testing.T) {
	srv := httptest.NewServer(Handler(func() tunnel.Status { return sample() }))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{
		`gresec_tunnel_up{interface="gre0",tunnel="gre0"} 1`,
		`gresec_inner_packets_total{direction="tx",interface="gre0",tunnel="gre0"} 10`,
		`gresec_inner_bytes_total{direction="rx",interface="gre0",tunnel="gre0"} 900`,
		`gresec_drops_total{interface="gre0",reason="too_big",tunnel="gre0"} 2`,
		`gresec_esp_sa_drops_total{interface="gre0",reason="auth",spi="0x00001002",tunnel="gre0"} 3`,
		`gresec_ike_sa_state{interface="gre0",state="established",tunnel="gre0"} 1`,
		`gresec_ike_sa_state{interface="gre0",state="idle",tunnel="gre0"} 0`,
		`gresec_ike_sa_rekey_in_seconds{interface="gre0",tunnel="gre0"} 100`,
		`gresec_child_sa_bytes_left{interface="gre0",spi_in="0x00001002",tunnel="gre0"} 400`,
		`gresec_ike_exchanges_total{exchange="IKE_AUTH",initiator="true",interface="gre0",result="ok",tunnel="gre0"} 1`,
		`gresec_ike_dpd_failures_total{interface="gre0",tunnel="gre0"} 2`,
		`gresec_ike_retransmits_total{interface="gre0",tunnel="gre0"} 1`,
		`gresec_ike_invalid_syntax_total{interface="gre0",tunnel="gre0"} 6`,
		`gresec_ike_bad_transitions_total{interface="gre0",tunnel="gre0"} 7`,
		`gresec_ike_half_open_sas{interface="gre0",tunnel="gre0"} 3`,
		`gresec_keepalive_up{interface="gre0",tunnel="gre0"} 0`,
		`gresec_keepalive_downs_total{interface="gre0",tunnel="gre0"} 1`,
		`gresec_keepalives_sent_total{interface="gre0",tunnel="gre0"} 7`,
		`gresec_keepalives_replied_total{interface="gre0",tunnel="gre0"} 3`,
		`gresec_keepalives_reflected_total{interface="gre0",tunnel="gre0"} 5`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s", want)
		}
	}
	// Without an outbound SA the tunnel cannot send: down.
	down := sample()
	down.Outbound = nil
	if n := testutil.ToFloat64(singleMetric(t, down, "gresec_tunnel_up")); n != 0 {
		t.Errorf("tunnel_up = %v without an outbound SA, want 0", n)
	}
	// Keepalives off: no keepalive_up (neither up nor down), counters stay.
	off := sample()
	off.Keepalive = &tunnel.KeepaliveStatus{State: "off", Reflected: 5}
	if n := testutil.CollectAndCount(singleMetric(t, off, "gresec_keepalive_up")); n != 0 {
		t.Errorf("keepalive_up present with keepalives off")
	}
	if n := testutil.ToFloat64(singleMetric(t, off, "gresec_keepalives_reflected_total")); n != 5 {
		t.Errorf("keepalives_reflected_total = %v with keepalives off, want 5", n)
	}
}

func singleMetric(t *testing.T, s tunnel.Status, name string) *filtered {
	return &filtered{c: NewCollector(func() tunnel.Status { return s }), name: name}
}

// sampleV1 is a keying = "ikev1" tunnel: one established phase 1 SA and
// one being set up, one phase 2 SA, behind a NAT.
func sampleV1() tunnel.Status {
	s := sample()
	s.Keying, s.IKE = "ikev1", nil
	s.IKEv1 = &ikev1.Status{
		Phase1: []ikev1.Phase1Status{{State: "QM_IDLE"}, {State: "MM_KEY_EXCH"}},
		Phase2: []ikev1.Phase2Status{{SPIIn: "0x00001002"}},
		Exchanges: []ikev1.ExchangeCount{{Exchange: "main_mode", Initiated: true, Result: "ok", Count: 2},
			{Exchange: "quick_mode", Initiated: false, Result: "timeout", Count: 1}},
		Received: 12, Retransmits: 4, DPDFailures: 1, Drops: map[string]uint64{"integrity": 3},
		NAT: &ikev1.NATStatus{Encap: "udp", NATHere: true, Keepalives: 5, Rebinds: 2},
	}
	return s
}

// TestIKEv1Metrics: the IKEv1 status becomes metrics, lint-clean, with
// each number from the snapshot; no IKEv2 SA metrics appear.
func TestIKEv1Metrics(t *testing.T) {
	problems, err := testutil.CollectAndLint(NewCollector(func() tunnel.Status { return sampleV1() }))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	srv := httptest.NewServer(Handler(func() tunnel.Status { return sampleV1() }))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{
		`gresec_ikev1_phase1_sas{interface="gre0",state="QM_IDLE",tunnel="gre0"} 1`,
		`gresec_ikev1_phase1_sas{interface="gre0",state="MM_KEY_EXCH",tunnel="gre0"} 1`,
		`gresec_ikev1_phase1_sas{interface="gre0",state="MM_NO_STATE",tunnel="gre0"} 0`,
		`gresec_ikev1_phase2_sas{interface="gre0",tunnel="gre0"} 1`,
		`gresec_ikev1_exchanges_total{exchange="main_mode",initiator="true",interface="gre0",result="ok",tunnel="gre0"} 2`,
		`gresec_ikev1_exchanges_total{exchange="quick_mode",initiator="false",interface="gre0",result="timeout",tunnel="gre0"} 1`,
		`gresec_ikev1_messages_received_total{interface="gre0",tunnel="gre0"} 12`,
		`gresec_ikev1_retransmits_total{interface="gre0",tunnel="gre0"} 4`,
		`gresec_ikev1_dpd_failures_total{interface="gre0",tunnel="gre0"} 1`,
		`gresec_ikev1_dropped_total{interface="gre0",reason="integrity",tunnel="gre0"} 3`,
		`gresec_ike_nat_keepalives_total{interface="gre0",tunnel="gre0"} 5`,
		`gresec_ike_nat_rebinds_total{interface="gre0",tunnel="gre0"} 2`,
		`gresec_ike_nat_detected{interface="gre0",side="local",tunnel="gre0"} 1`,
		`gresec_ike_esp_in_udp{interface="gre0",tunnel="gre0"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(body, "gresec_ike_sa_state") {
		t.Errorf("IKEv2 SA metrics for an IKEv1 tunnel")
	}
}
