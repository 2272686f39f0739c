package config

import (
	"strings"
	"testing"
)

// TestDiffTypedFields: Diff reports typed fields, and a change of
// ipsec.replay_window is that field alone. The string version asked
// `changed("ike.")` and `changed("static.")`, both true for it whatever
// the prefix.
func TestDiffTypedFields(t *testing.T) {
	old, err := Parse("g.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	next, err := Parse("g.toml", []byte(strings.Replace(good, "replay_window = 1024", "replay_window = 64", 1)))
	if err != nil {
		t.Fatal(err)
	}
	cs := Diff(old, old.Digests(), next)
	got := Changed(cs)
	if got != FieldsOf(IPsecReplayWindow) || len(cs) != 1 {
		t.Fatalf("changes %v (fields %v), want only ipsec.replay_window", cs, got)
	}
	if got.Any(IKEFields) || got.Any(StaticFields) || got.Has(TunnelMTU) {
		t.Errorf("a replay window change counts as an [ike] or [static] change: %v", got)
	}
	if cs[0].Key() != "ipsec.replay_window" || cs[0].String() != "ipsec.replay_window: 1024 -> 64" {
		t.Errorf("change %q / %q", cs[0].Key(), cs[0])
	}

	// Several changes, secrets by digest only, in file order.
	next, err = Parse("g.toml", []byte(strings.NewReplacer(
		"mss_clamp = true", "mss_clamp = false\nmtu = 1400",
		`interface = "gre0"`, `interface = "gre1"`,
		"0x202122", "0x302122",
	).Replace(good)))
	if err != nil {
		t.Fatal(err)
	}
	cs = Diff(old, old.Digests(), next)
	want := "tunnel.interface: gre0 -> gre1|tunnel.mtu: 1442 -> 1400|tunnel.mss_clamp: true -> false|static.key_in: (secret) -> (changed)|control.socket: /run/gresec/gre0.sock -> /run/gresec/gre1.sock"
	var s []string
	for _, c := range cs {
		s = append(s, c.String())
	}
	if strings.Join(s, "|") != want {
		t.Errorf("changes\n got  %s\n want %s", strings.Join(s, "|"), want)
	}
	if f := Changed(cs); f.String() != "tunnel.interface, tunnel.mtu, tunnel.mss_clamp, static.key_in, control.socket" ||
		!f.Has(StaticKeyIn) || f.Has(StaticKeyOut) || !f.Any(StaticFields) || f.Any(IKEFields) {
		t.Errorf("fields %v", f)
	}
	if l := leaks(strings.Join(s, "|"), keyOut); l != "" {
		t.Errorf("a change shows key material: %v", s)
	}
}

// TestFieldsNameFileKeys: every field Diff reports is a key of the file
// (PSK contents: the key of the file that holds them), and the sections
// hold their own keys only.
func TestFieldsNameFileKeys(t *testing.T) {
	for f := range numFields {
		key := strings.TrimSuffix(f.String(), "_psk") // ike.local_psk: the contents of ike.local_psk_file
		if _, ok := schema[key]; !ok {
			if _, ok := schema[key+"_psk_file"]; !ok {
				t.Errorf("field %d (%s) is not a key of the file", f, f)
			}
		}
		if StaticFields.Has(f) != strings.HasPrefix(f.String(), "static.") || IKEFields.Has(f) != strings.HasPrefix(f.String(), "ike.") {
			t.Errorf("%s is in the wrong section set", f)
		}
	}
	if s := FieldsOf(DaemonUser, TunnelInterface); s.String() != "tunnel.interface, daemon.user" || len(s.List()) != 2 {
		t.Errorf("fields %q", s)
	}
}
