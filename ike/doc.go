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
// The engine keeps every IKE SA it has with the peer, each with its own
// request window (RFC 7296 §2.3), so that collisions resolve as the RFC
// says rather than by timing: CHILD_SA and IKE SA rekeys that cross are
// both answered, and the SA made with the lowest of the four nonces is
// deleted by whoever initiated it (§2.8.1, §2.8.2); an IKE SA rekey
// crossing a CHILD_SA rekey gets TEMPORARY_FAILURE and both retry after a
// random delay (§2.25.2). Two IKE SAs set up at once by IKE_SA_INIT (both
// peers initiating) are treated like a rekey collision, on the nonces of
// the two IKE_SA_INIT exchanges. Before it removes the CHILD_SA that is
// sending, the engine moves sending to the surviving one (OutboundSwitcher).
// Under a flood of IKE_SA_INIT requests it answers with stateless cookies
// (§2.6).
//
// Key material is held in Secret values that print as "[redacted]" under
// every fmt verb, so a key or PSK cannot reach a log through %v of a holder.
package ike
