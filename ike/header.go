package ike

import "encoding/binary"

// Header is a view of the 28-byte IKE header (RFC 7296 §3.1) at the start
// of a message, in the style of gVisor's header package.
type Header []byte

const (
	offSPIi      = 0
	offSPIr      = 8
	offNext      = 16
	offVersion   = 17
	offExchange  = 18
	offFlags     = 19
	offMessageID = 20
	offLength    = 24

	// HeaderLen is the IKE header's length.
	HeaderLen = 28
	// genericHeaderLen is the generic payload header's length (§3.2).
	genericHeaderLen = 4

	// Version2 is major version 2, minor 0.
	Version2 = 0x20

	// MaxMessageLen bounds what we decode or build. IKE over UDP is limited
	// by the datagram; a peer that claims more is not talking IKE to us.
	MaxMessageLen = 65535 - 8
)

func (h Header) SPIi() uint64                 { return binary.BigEndian.Uint64(h[offSPIi:]) }
func (h Header) SPIr() uint64                 { return binary.BigEndian.Uint64(h[offSPIr:]) }
func (h Header) NextPayload() PayloadType     { return PayloadType(h[offNext]) }
func (h Header) Version() uint8               { return h[offVersion] }
func (h Header) Exchange() ExchangeType       { return ExchangeType(h[offExchange]) }
func (h Header) Flags() Flags                 { return Flags(h[offFlags]) }
func (h Header) MessageID() uint32            { return binary.BigEndian.Uint32(h[offMessageID:]) }
func (h Header) Length() uint32               { return binary.BigEndian.Uint32(h[offLength:]) }
func (h Header) SetSPIi(v uint64)             { binary.BigEndian.PutUint64(h[offSPIi:], v) }
func (h Header) SetSPIr(v uint64)             { binary.BigEndian.PutUint64(h[offSPIr:], v) }
func (h Header) SetNextPayload(p PayloadType) { h[offNext] = byte(p) }
func (h Header) SetVersion(v uint8)           { h[offVersion] = v }
func (h Header) SetExchange(e ExchangeType)   { h[offExchange] = byte(e) }
func (h Header) SetFlags(f Flags)             { h[offFlags] = byte(f) }
func (h Header) SetMessageID(v uint32)        { binary.BigEndian.PutUint32(h[offMessageID:], v) }
func (h Header) SetLength(v uint32)           { binary.BigEndian.PutUint32(h[offLength:], v) }

// IsResponse reports the R flag.
func (h Header) IsResponse() bool { return h.Flags()&FlagResponse != 0 }
