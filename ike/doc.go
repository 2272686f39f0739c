// Package ike implements IKEv2 (RFC 7296) for gresec: the wire codec
// (header, payloads, the SK encrypted payload of RFC 5282), the crypto suite
// (PRF, prf+, key derivation, Diffie-Hellman, PSK authentication), proposal
// parsing in strongSwan syntax, and the exchange engine that negotiates one
// host-to-host GRE CHILD_SA in transport mode and keeps it rekeyed.
//
// The codec decodes into plain Go values (Message, *SA, *KE, ...) with a
// cursor over the input and strict length checks; decoded values never alias
// the input buffer, so a caller may reuse it. Encoding is canonical: decoding
// what Encode wrote gives back an equal Message, which the fuzz targets check.
//
// Key material is held in Secret values that print as "[redacted]" under
// every fmt verb, so a key or PSK cannot reach a log through %v of a holder.
package ike
