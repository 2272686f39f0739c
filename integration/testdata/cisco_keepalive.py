#!/usr/bin/python3
"""Send a Cisco IOS GRE keepalive to gresec and report what comes back.

Run inside the peer's network namespace with Debian's python (scapy and
cryptography are under /usr/bin/python3):

    cisco_keepalive.py IFACE LOCAL REMOTE none
    cisco_keepalive.py IFACE LOCAL REMOTE esp SPI_OUT KEY_OUT SPI_IN KEY_IN

LOCAL is this (the IOS) side's underlay address, REMOTE gresec's. The
keepalive is what IOS `keepalive 10 3` sends: GRE (protocol 0x0800)
carrying IPv4 from REMOTE to LOCAL, TTL 255, protocol 47, with a bare GRE
header of protocol type 0 (24 bytes, as `debug tunnel keepalive` shows:
"len=24 ttl=255"). With esp it goes in a transport-mode ESP packet with
AES-GCM-16 (KEY_OUT: key and salt in hex, as gresec's [static] keys), as a
crypto map protecting GRE between the two addresses would send it.

It sniffs IFACE for up to 5 s for the answer from REMOTE, decrypting ESP
with SPI_IN/KEY_IN, and prints one JSON object: what was sent and the first
packet that came back carrying GRE of protocol type 0, field by field, for
the Go test to judge ("answer": null when none came).
"""

import json
import sys
import time

from scapy.all import AsyncSniffer, GRE, IP, conf, raw, send
from scapy.layers.ipsec import ESP, SecurityAssociation

conf.verb = 0


def main():
    iface, local, remote, mode = sys.argv[1:5]
    keepalive = IP(src=remote, dst=local, ttl=255, id=0, flags=0) / GRE(proto=0)
    keepalive = IP(raw(keepalive))  # lengths and checksum filled in
    pkt = IP(src=local, dst=remote) / GRE(proto=0x0800) / keepalive
    sa_in = None
    if mode == "esp":
        spi_out, key_out, spi_in, key_in = sys.argv[5:9]
        sa_out = SecurityAssociation(ESP, spi=int(spi_out, 0), crypt_algo="AES-GCM",
                                     crypt_key=bytes.fromhex(key_out[2:]))
        sa_in = SecurityAssociation(ESP, spi=int(spi_in, 0), crypt_algo="AES-GCM",
                                    crypt_key=bytes.fromhex(key_in[2:]))
        pkt = sa_out.encrypt(pkt)

    def candidate(p):
        return IP in p and p[IP].src == remote and p[IP].dst == local and p[IP].proto in (47, 50)

    def opened(p):
        """The answer's fields, ESP decrypted; gresec's own traffic over the
        tunnel (IPv6 router solicitations, MLD) comes this way too."""
        ip = IP(raw(p[IP]))
        r = {"answer_proto": ip.proto, "answer_src": ip.src, "answer_dst": ip.dst}
        if ip.proto == 50:
            r["answer_spi"], r["answer_seq"] = ip[ESP].spi, ip[ESP].seq
            plain = sa_in.decrypt(ip)  # raises on a bad ICV
            r["answer_next_header"] = plain.proto
            r["answer"] = raw(plain.payload).hex()
        else:
            r["answer"] = raw(ip.payload).hex()
        return r

    def is_keepalive(p):
        # GRE protocol type 0 at bytes 2-3 of the GRE header.
        return opened(p)["answer"][4:8] == "0000"

    sniffer = AsyncSniffer(iface=iface, lfilter=candidate, stop_filter=is_keepalive, timeout=5)
    sniffer.start()
    time.sleep(0.5)  # the sniffer's socket must be open before the answer comes
    send(pkt, iface=iface)
    sniffer.join()
    report = {"sent_inner": raw(keepalive).hex(), "sent_proto": pkt[IP].proto, "answer": None}
    got = list(sniffer.results or [])
    answers = [p for p in got if is_keepalive(p)]
    report["other_packets"] = len(got) - len(answers)
    if answers:
        report.update(opened(answers[0]))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
