// Package ikeattack is an IKEv2 attacker for tests: what someone on the
// same LAN as a gresec responder can send it without knowing the PSK.
//
// It forges datagrams with the ike package's own codec (Forger; the bad
// KE and malformed catalogues), sends them with any IPv4 source address
// and port through a raw socket (Injector, IP_HDRINCL), paces them at a
// bounded rate for a bounded time (Flood), and, for an attacker on the
// path, reads the responder's replies (Sniffer: a raw UDP socket sees
// every UDP datagram arriving in its network namespace) and answers COOKIE
// demands (CookieAnswerer, RFC 7296 §2.6) so that the responder spends a
// Diffie-Hellman computation and keeps half-open state for every request.
//
// Only tests use it, inside network namespaces they create, with test
// addresses (198.18.0.0/15). Every datagram the Injector sends carries
// the IPv4 TTL it was made with (MarkTTL by default), so that a counter in
// the responder's namespace (nftables `ip ttl 77`) can tell attack traffic
// from the legitimate peer's and account for every datagram.
package ikeattack
