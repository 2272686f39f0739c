//go:build !linux

// Package privdrop turns a daemon started as root into an unprivileged user
// that keeps only the capabilities it still uses.
package privdrop

import "fmt"

// Capability numbers, for the callers' benefit; only Linux has them.
const (
	CapNetBindService = 10
	CapNetAdmin       = 12
	CapNetRaw         = 13
)

// To is implemented on Linux only: the BSDs have no capabilities to keep,
// and their sockets and TUN device would need re-checking after setuid.
func To(name string, keep ...int) error {
	return fmt.Errorf("privdrop: daemon.user is implemented on Linux only; remove it or run gresec under an rc.d script's user switch")
}

// Describe names the capabilities in keep.
func Describe(keep ...int) string { return fmt.Sprint(keep) }

// Limit is implemented on Linux only.
func Limit(keep ...int) error { return nil }
