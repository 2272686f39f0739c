package ike

import "testing"

// TestStateNamesDefinedOnce: the summary State spells the SA states it
// shares with saState the same way, so `gresec status`, its JSON and the
// ike_sa_state metric use the names the engine logs.
func TestStateNamesDefinedOnce(t *testing.T) {
	if string(StateConnecting) != saConnecting.String() || string(StateEstablished) != saEstablished.String() {
		t.Errorf("State names %q/%q, saState names %q/%q", StateConnecting, StateEstablished, saConnecting, saEstablished)
	}
	seen := map[string]bool{}
	for _, r := range DropReasons() {
		if n := r.String(); n == "unknown" || seen[n] {
			t.Errorf("drop reason %d is named %q", r, n)
		} else {
			seen[n] = true
		}
	}
}
