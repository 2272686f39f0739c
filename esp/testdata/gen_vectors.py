#!/usr/bin/python3
"""Generate ESP (RFC 4303, transport mode) known-answer vectors for package
esp with an implementation independent of it, for every transform it has:
AES-GCM-16 (RFC 4106), ChaCha20-Poly1305 (RFC 7634) and AES-CBC (RFC 3602)
with HMAC-SHA1-96 (RFC 2404) or HMAC-SHA2 (RFC 4868), with and without
extended sequence numbers (RFC 4303 §2.2.1). pyca/cryptography and Python's
hmac build every packet, and scapy's SecurityAssociation re-encrypts and
decrypts each one as a cross-check, except AES-CBC with ESN: scapy 2.5
leaves the high sequence bits out of an ESP ICV (AuthAlgo.sign and verify
ignore esn for ESP), so those are checked against scapy's cipher with the
ICV computed here.

Run with Debian's Python (it has python3-cryptography and python3-scapy):

    /usr/bin/python3 esp/testdata/gen_vectors.py > esp/testdata/vectors.json

The output is deterministic (seeded PRNG), so regenerating it must give the
committed file byte for byte.
"""

import hashlib
import hmac
import json
import random
import struct
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

# strongSwan name -> (kind, key bytes, hash, ICV bytes, scapy names)
TRANSFORMS = {
    "aes128gcm16": ("aead", 16, None, 16, ("AES-GCM", "NULL")),
    "aes192gcm16": ("aead", 24, None, 16, ("AES-GCM", "NULL")),
    "aes256gcm16": ("aead", 32, None, 16, ("AES-GCM", "NULL")),
    "chacha20poly1305": ("chacha", 32, None, 16, ("CHACHA20-POLY1305", "NULL")),
    "aes128-sha1": ("cbc", 16, hashlib.sha1, 12, ("AES-CBC", "HMAC-SHA1-96")),
    "aes192-sha256": ("cbc", 24, hashlib.sha256, 16, ("AES-CBC", "SHA2-256-128")),
    "aes256-sha256": ("cbc", 32, hashlib.sha256, 16, ("AES-CBC", "SHA2-256-128")),
    "aes256-sha384": ("cbc", 32, hashlib.sha384, 24, ("AES-CBC", "SHA2-384-192")),
    "aes256-sha512": ("cbc", 32, hashlib.sha512, 32, ("AES-CBC", "SHA2-512-256")),
}


def parse(transform):
    esn = transform.endswith("-esn")
    name = transform[:-4] if esn else transform
    kind, keylen, digest, icv, scapy_names = TRANSFORMS[name]
    integ = digest().digest_size if digest else 0
    return name, esn, kind, keylen, digest, icv, scapy_names, integ


def keymat_len(transform):
    _, _, kind, keylen, _, _, _, integ = parse(transform)
    return keylen + (4 if kind != "cbc" else integ)


def esp_packet(transform, keymat, spi, seq, iv, payload, nh, padlen):
    """SPI | seq-low | IV | E(payload | 1,2,..,padlen | padlen | nh) | ICV,
    with seq-high in the AAD (AEAD) or after the ICV input (HMAC) under ESN."""
    _, esn, kind, keylen, digest, icv, _, _ = parse(transform)
    pad = bytes(range(1, padlen + 1))
    plain = payload + pad + bytes([padlen, nh])
    hi, lo = seq >> 32, seq & 0xFFFFFFFF
    header = struct.pack("!II", spi, lo)
    if kind in ("aead", "chacha"):
        key, salt = keymat[:-4], keymat[-4:]
        aad = struct.pack("!III", spi, hi, lo) if esn else header
        aead = AESGCM(key) if kind == "aead" else ChaCha20Poly1305(key)
        return header + iv + aead.encrypt(salt + iv, plain, aad)  # ct || 16-byte ICV
    key, integ = keymat[:keylen], keymat[keylen:]
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    body = header + iv + enc.update(plain) + enc.finalize()
    mac = hmac.new(integ, body + (struct.pack("!I", hi) if esn else b""), digest)
    return body + mac.digest()[:icv]


def min_pad(transform, n):
    # RFC 4303 §2.4: payload + pad + 2 fills whole blocks: 16 bytes for
    # AES-CBC, 4 for the AEADs.
    block = 16 if parse(transform)[2] == "cbc" else 4
    return -(n + 2) % block


def scapy_sa(v, keymat):
    from scapy.layers.ipsec import ESP, SecurityAssociation
    _, esn, kind, keylen, _, _, (crypt, auth), _ = parse(v["transform"])
    kw = {}
    if kind == "cbc":
        kw = dict(crypt_key=keymat[:keylen], auth_algo=auth, auth_key=keymat[keylen:])
    else:
        kw = dict(crypt_key=keymat)
    # seq_num here too: encrypt(seq_num=0) falls back to the SA's.
    return SecurityAssociation(ESP, spi=v["spi"], crypt_algo=crypt, seq_num=v["seq"] & 0xFFFFFFFF,
                               esn_en=esn, esn=v["seq"] >> 32, **kw)


def scapy_check(v, keymat, payload, packet):
    """Re-encrypt with scapy (transport mode, fixed IV) and decrypt ours."""
    from scapy.layers.inet import IP
    from scapy.layers.ipsec import ESP
    from scapy.packet import Raw

    _, esn, kind, _, digest, icv, _, _ = parse(v["transform"])
    sa = scapy_sa(v, keymat)
    inner = IP(src="198.18.0.1", dst="198.18.0.2", proto=v["next_header"])
    if payload:
        inner = inner / Raw(load=payload)
    hi, lo = v["seq"] >> 32, v["seq"] & 0xFFFFFFFF
    enc = sa.encrypt(inner, seq_num=lo, iv=bytes.fromhex(v["iv"]), esn_en=esn, esn=hi)
    ours = bytes(enc[ESP])
    cbc_esn = kind == "cbc" and esn
    if cbc_esn:
        # scapy signed without seq-high: compare all but the ICV, and
        # check our ICV over scapy's ciphertext with seq-high appended.
        integ = keymat[len(keymat) - digest().digest_size:]
        mac = hmac.new(integ, ours[:-icv] + struct.pack("!I", hi), digest)
        ours = ours[:-icv] + mac.digest()[:icv]
    if ours != packet:
        raise SystemExit("scapy disagrees on %s:\n scapy %s\n ours  %s"
                         % (v["name"], ours.hex(), packet.hex()))
    if cbc_esn:
        return  # scapy's verify would reject an ICV that covers seq-high
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
    cases = [(name, "aes256gcm16" if len(k) == 36 else "aes128gcm16", k, spi, seq, n, nh, extra, iv, rng)
             for name, k, spi, seq, n, nh, extra, iv in cases]

    # The other transforms, each with its own keys: (name, transform, spi,
    # seq, payload length, next header, extra pad, iv). An AES-CBC IV is
    # random in Seal; these use the one given (None: drawn here).
    others = [
        ("aes192gcm16-gre", "aes192gcm16", 0x00002001, 3, 57, 47, 0, None),
        ("chacha-pad0-gre", "chacha20poly1305", 0x00002002, 1, 62, 47, 0, None),
        ("chacha-pad3-gre-mtu", "chacha20poly1305", 0x00002002, 77, 1443, 47, 0, None),
        ("chacha-peer-iv-extra-pad", "chacha20poly1305", 0x00002002, 78, 20, 4, 8, "rand"),
        ("aes128-sha1-gre", "aes128-sha1", 0x00003001, 1, 62, 47, 0, None),
        ("aes128-sha1-pad15", "aes128-sha1", 0x00003001, 2, 31, 47, 0, None),
        ("aes128-sha1-empty-ipip", "aes128-sha1", 0x00003001, 0xFFFFFFFF, 0, 4, 0, None),
        ("aes192-sha256-gre", "aes192-sha256", 0x00003002, 9, 100, 47, 0, None),
        ("aes256-sha256-gre-mtu", "aes256-sha256", 0x00003003, 5, 1438, 47, 0, None),
        ("aes256-sha256-extra-pad", "aes256-sha256", 0x00003003, 6, 40, 47, 32, None),
        ("aes256-sha384-gre", "aes256-sha384", 0x00003004, 12, 222, 47, 0, None),
        ("aes256-sha512-gre", "aes256-sha512", 0x00003005, 13, 1422, 47, 0, None),
        ("aes256gcm16-esn-low", "aes256gcm16-esn", 0x00004001, 9, 62, 47, 0, None),
        ("aes256gcm16-esn-2^32", "aes256gcm16-esn", 0x00004001, 1 << 32, 61, 47, 0, None),
        ("aes128gcm16-esn-high", "aes128gcm16-esn", 0x00004002, (5 << 32) + 123, 60, 47, 0, None),
        ("chacha-esn-2^32+1", "chacha20poly1305-esn", 0x00004003, (1 << 32) + 1, 63, 47, 0, None),
        ("aes128-sha1-esn-2^32", "aes128-sha1-esn", 0x00004004, 1 << 32, 62, 47, 0, None),
        ("aes256-sha256-esn-high", "aes256-sha256-esn", 0x00004005, (3 << 32) + 0xFFFFFFF0, 99, 47, 0, None),
        ("aes256-sha512-esn-low", "aes256-sha512-esn", 0x00004006, 8, 16, 4, 0, None),
    ]
    # Their own generator, so that the AES-GCM vectors above stay as they
    # were before these were added.
    rng2 = random.Random(7634_3602)
    keys = {}
    for name, transform, spi, seq, n, nh, extra, iv in others:
        if transform not in keys:
            keys[transform] = bytes(rng2.getrandbits(8) for _ in range(keymat_len(transform)))
        if iv == "rand" or (iv is None and parse(transform)[2] == "cbc"):
            ivlen = 16 if parse(transform)[2] == "cbc" else 8
            iv = bytes(rng2.getrandbits(8) for _ in range(ivlen))
        cases.append((name, transform, keys[transform], spi, seq, n, nh, extra, iv, rng2))

    vectors = []
    for name, transform, keymat, spi, seq, n, nh, extra, iv, prng in cases:
        payload = bytes(prng.getrandbits(8) for _ in range(n))
        padlen = min_pad(transform, n) + extra
        # sealable: Seal's padding. For an AEAD, Seal with this seq writes
        # the packet exactly (its IV is the counter); for AES-CBC, with
        # this IV.
        own = extra == 0 and (iv is None or parse(transform)[2] == "cbc")
        if iv is None:
            iv = struct.pack("!Q", seq)  # our convention: IV = 64-bit counter
        packet = esp_packet(transform, keymat, spi, seq, iv, payload, nh, padlen)
        v = {
            "name": name,
            "transform": transform,
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
    json.dump({"generator": "esp/testdata/gen_vectors.py (pyca/cryptography and hmac, cross-checked with scapy)",
               "vectors": vectors}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
