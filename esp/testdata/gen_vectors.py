#!/usr/bin/python3
"""Generate ESP AES-GCM (RFC 4303 + RFC 4106, transport mode) known-answer
vectors for package esp with an implementation independent of it:
pyca/cryptography's AESGCM builds every packet, and scapy's
SecurityAssociation re-encrypts and decrypts each one as a cross-check.

Run with Debian's Python (it has python3-cryptography and python3-scapy):

    /usr/bin/python3 esp/testdata/gen_vectors.py > esp/testdata/vectors.json

The output is deterministic (seeded PRNG), so regenerating it must give the
committed file byte for byte.
"""

import json
import random
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def esp_packet(keymat, spi, seq, iv, payload, nh, padlen):
    """SPI | seq | IV | AES-GCM(payload | 1,2,..,padlen | padlen | nh) | ICV."""
    key, salt = keymat[:-4], keymat[-4:]
    pad = bytes(range(1, padlen + 1))
    plain = payload + pad + bytes([padlen, nh])
    header = struct.pack("!II", spi, seq)  # the AAD (no ESN)
    ct = AESGCM(key).encrypt(salt + iv, plain, header)  # ciphertext || 16-byte ICV
    return header + iv + ct


def min_pad(n):
    # RFC 4303 §2.4: payload + pad + 2 ends on a 4-byte boundary.
    return -(n + 2) % 4


def scapy_check(v, keymat, payload, packet):
    """Re-encrypt with scapy (transport mode, fixed IV) and decrypt ours."""
    from scapy.layers.inet import IP
    from scapy.layers.ipsec import ESP, SecurityAssociation
    from scapy.packet import Raw

    sa = SecurityAssociation(ESP, spi=v["spi"], crypt_algo="AES-GCM",
                             crypt_key=keymat)
    inner = IP(src="198.18.0.1", dst="198.18.0.2", proto=v["next_header"])
    if payload:
        inner = inner / Raw(load=payload)
    enc = sa.encrypt(inner, seq_num=v["seq"], iv=bytes.fromhex(v["iv"]))
    ours = bytes(enc[ESP])
    if ours != packet:
        raise SystemExit("scapy disagrees on %s:\n scapy %s\n ours  %s"
                         % (v["name"], ours.hex(), packet.hex()))
    # decrypt() mutates its argument: hand it a fresh parse of our bytes.
    wire = IP(bytes(IP(src="198.18.0.1", dst="198.18.0.2", proto=50) / Raw(load=packet)))
    dec = sa.decrypt(wire)
    # Slice by the IP length: scapy invents a default layer for an empty
    # protocol-4 payload.
    if dec.proto != v["next_header"] or bytes(dec)[dec.ihl * 4:dec.len] != payload:
        raise SystemExit("scapy cannot decrypt %s" % v["name"])


def main():
    rng = random.Random(4303_4106)
    k256 = bytes(rng.getrandbits(8) for _ in range(36))
    k128 = bytes(rng.getrandbits(8) for _ in range(20))

    # (name, keymat, spi, seq, payload length, next header, extra pad, iv)
    # extra pad > 0 or an iv that is not the sequence number marks packets
    # our Seal never makes but a peer may send: Open must accept them.
    cases = [
        ("aes256-pad0-gre", k256, 0x00001001, 1, 62, 47, 0, None),
        ("aes256-pad1-gre", k256, 0x00001001, 2, 61, 47, 0, None),
        ("aes256-pad2-ipip", k256, 0x00001001, 3, 60, 4, 0, None),
        ("aes256-pad3-ipip-lastseq", k256, 0x00001001, 0xFFFFFFFF, 63, 4, 0, None),
        ("aes256-mtu1442-gre", k256, 0xC0FFEE01, 100, 1446, 47, 0, None),
        ("aes128-pad0-gre", k128, 0x00001002, 1, 62, 47, 0, None),
        ("aes128-pad1-gre", k128, 0x00001002, 7, 1, 47, 0, None),
        ("aes128-pad2-ipip-empty", k128, 0x00001002, 0x12345678, 0, 4, 0, None),
        ("aes128-pad3-gre-big", k128, 0x00001002, 42, 1443, 47, 0, None),
        ("aes256-peer-iv-extra-pad", k256, 0x00001001, 5, 62, 47, 4,
         bytes(rng.getrandbits(8) for _ in range(8))),
        ("aes128-peer-iv", k128, 0x00001002, 9, 33, 47, 0,
         bytes(rng.getrandbits(8) for _ in range(8))),
    ]
    vectors = []
    for name, keymat, spi, seq, n, nh, extra, iv in cases:
        payload = bytes(rng.getrandbits(8) for _ in range(n))
        padlen = min_pad(n) + extra
        own = iv is None and extra == 0
        if iv is None:
            iv = struct.pack("!Q", seq)  # our convention: IV = 64-bit counter
        packet = esp_packet(keymat, spi, seq, iv, payload, nh, padlen)
        v = {
            "name": name,
            "keymat": keymat.hex(),
            "spi": spi,
            "seq": seq,
            "iv": iv.hex(),
            "next_header": nh,
            "pad_len": padlen,
            "sealable": own,  # Seal with this seq must reproduce packet exactly
            "payload": payload.hex(),
            "packet": packet.hex(),
        }
        if extra == 0:  # scapy always pads minimally
            scapy_check(v, keymat, payload, packet)
            v["scapy_checked"] = True
        vectors.append(v)
    json.dump({"generator": "esp/testdata/gen_vectors.py (pyca/cryptography AESGCM, cross-checked with scapy)",
               "vectors": vectors}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
