package ike

import (
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
)

// Secret is key material: a PSK, SKEYSEED, an SK_* key or a CHILD_SA key.
// It prints as "[redacted]" under every fmt verb, in slog and through
// String/GoString, so logging a struct that holds one cannot leak it.
// The bytes themselves are reachable with an explicit conversion ([]byte(s)).
type Secret []byte

const redacted = "[redacted]"

func (Secret) String() string                 { return redacted }
func (Secret) GoString() string               { return redacted }
func (Secret) Format(f fmt.State, verb rune)  { io.WriteString(f, redacted) }
func (Secret) LogValue() slog.Value           { return slog.StringValue(redacted) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (s Secret) Equal(o Secret) bool          { return subtle.ConstantTimeCompare(s, o) == 1 }

// Wipe overwrites the key material; used when an SA is retired.
func (s Secret) Wipe() { clear(s) }
