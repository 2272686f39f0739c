// Package ikev1 is IKEv1 (RFC 2407, 2408, 2409) with pre-shared keys, for
// peers that speak nothing newer: Cisco IOS crypto maps and FreeBSD racoon.
//
// It negotiates Main Mode (phase 1, identity protection) and Quick Mode
// (phase 2, with PFS) for GRE in transport mode, and hands the ESP keys to
// the same data plane as package ike (ike.DataPlane, ike.ChildKeys). It
// reuses ike's Diffie-Hellman groups, PRFs, identities and proposal
// syntax; its own are the ISAKMP codec (codec.go, payload.go), the key
// schedule and CBC chaining of RFC 2409 (crypto.go) and the exchanges
// (mainmode.go, quickmode.go, info.go) driven by one Engine (engine.go).
//
// Aggressive Mode is refused: its first answer carries a hash keyed with
// the PSK, which anyone who sends one packet can crack offline.
package ikev1
