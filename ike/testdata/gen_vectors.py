#!/usr/bin/python3
"""Independent known-answer vectors for package ike.

Run with Debian's python (python3-cryptography):  /usr/bin/python3 gen_vectors.py > vectors.json
Everything here is written from RFC 7296 / 5282 / 5903 / 8031 / 3526 directly
with the `cryptography` package and struct, sharing no code with the Go side.
"""
import hashlib, hmac, json, struct, sys
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

H = {5: hashlib.sha256, 6: hashlib.sha384, 7: hashlib.sha512}

def prf(alg, key, data):
    return hmac.new(key, data, H[alg]).digest()

def prfplus(alg, key, seed, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = prf(alg, key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:n]

def seq(start, n):
    return bytes((start + i) & 0xFF for i in range(n))

CURVES = {19: (ec.SECP256R1(), 32), 20: (ec.SECP384R1(), 48), 21: (ec.SECP521R1(), 66)}
MODP2048 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)

def dh(group, priv_i, priv_r):
    """Returns (pub_i, pub_r, shared) as IKE KE data / g^ir."""
    if group in CURVES:
        curve, n = CURVES[group]
        ki = ec.derive_private_key(int.from_bytes(priv_i, "big"), curve)
        kr = ec.derive_private_key(int.from_bytes(priv_r, "big"), curve)
        def pub(k):  # RFC 5903 section 7: x | y, no point-format octet
            nums = k.public_key().public_numbers()
            return nums.x.to_bytes(n, "big") + nums.y.to_bytes(n, "big")
        z = ki.exchange(ec.ECDH(), kr.public_key())
        assert z == kr.exchange(ec.ECDH(), ki.public_key())
        return pub(ki), pub(kr), z
    if group == 31:
        ki = x25519.X25519PrivateKey.from_private_bytes(priv_i)
        kr = x25519.X25519PrivateKey.from_private_bytes(priv_r)
        raw = lambda k: k.public_key().public_bytes_raw() if hasattr(k.public_key(), "public_bytes_raw") else k.public_key().public_bytes(
            __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.Raw,
            __import__("cryptography.hazmat.primitives.serialization", fromlist=["PublicFormat"]).PublicFormat.Raw)
        z = ki.exchange(kr.public_key())
        return raw(ki), raw(kr), z
    if group == 14:
        xi = int.from_bytes(priv_i, "big") | (1 << 383)
        xr = int.from_bytes(priv_r, "big") | (1 << 383)
        yi, yr = pow(2, xi, MODP2048), pow(2, xr, MODP2048)
        z = pow(yr, xi, MODP2048)
        assert z == pow(yi, xr, MODP2048)
        return yi.to_bytes(256, "big"), yr.to_bytes(256, "big"), z.to_bytes(256, "big")
    raise ValueError(group)

# --- independent IKE encoder (RFC 7296 section 3) ---
def gen(next_type, body, critical=False):
    return struct.pack("!BBH", next_type, 0x80 if critical else 0, 4 + len(body)) + body

def chain(payloads):  # [(type, body)]
    out = b""
    for i, (t, body) in enumerate(payloads):
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else 0
        out += gen(nxt, body)
    return out

def header(spii, spir, first, exch, flags, msgid, length):
    return struct.pack("!QQBBBBII", spii, spir, first, 0x20, exch, flags, msgid, length)

def message(spii, spir, exch, flags, msgid, payloads):
    body = chain(payloads)
    first = payloads[0][0] if payloads else 0
    return header(spii, spir, first, exch, flags, msgid, 28 + len(body)) + body

def transform(ttype, tid, keylen=None, last=False):
    attrs = struct.pack("!HH", 0x8000 | 14, keylen) if keylen else b""
    return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attrs), ttype, 0, tid) + attrs

def proposal(num, proto, spi, transforms, last=True):
    body = b"".join(transform(*t, last=(i == len(transforms) - 1)) for i, t in enumerate(transforms))
    return struct.pack("!BBHBBBB", 0 if last else 2, 0, 8 + len(spi) + len(body), num, proto, len(spi), len(transforms)) + spi + body

def notify(proto, spi, kind, data=b""):
    return struct.pack("!BBH", proto, len(spi), kind) + spi + data

def ke(group, data):
    return struct.pack("!HH", group, 0) + data

def ident(idtype, data):
    return struct.pack("!BBBB", idtype, 0, 0, 0) + data

def ts_host(addr, proto):
    return struct.pack("!BBBBBBHHH", 1, 0, 0, 0, 7, proto, 16, 0, 0xFFFF) + addr + addr

def suite(ikeprop):
    return ikeprop

def case(name, group, prfalg, keybits):
    ni, nr = seq(0x10, 32), seq(0x80, 32)
    spii, spir = 0x0102030405060708, 0xF0E0D0C0B0A09080
    n = {19: 32, 20: 48, 21: 66, 31: 32, 14: 48}[group]
    priv_i, priv_r = seq(0x21, n), seq(0x42, n)
    if group == 21:
        priv_i, priv_r = bytes([priv_i[0] & 1]) + priv_i[1:], bytes([priv_r[0] & 1]) + priv_r[1:]
    pub_i, pub_r, z = dh(group, priv_i, priv_r)
    enclen = keybits // 8 + 4
    ps = H[prfalg]().digest_size

    skeyseed = prf(prfalg, ni + nr, z)
    km = prfplus(prfalg, skeyseed, ni + nr + struct.pack("!QQ", spii, spir), 3 * ps + 2 * enclen)
    keys, off = {}, 0
    for k, l in (("SK_d", ps), ("SK_ei", enclen), ("SK_er", enclen), ("SK_pi", ps), ("SK_pr", ps)):
        keys[k] = km[off:off + l]; off += l

    ikesa = proposal(1, 1, b"", [(1, 20, keybits), (2, prfalg), (4, group)])
    nat = hashlib.sha1(struct.pack("!QQ", spii, 0) + bytes([198, 18, 0, 1]) + struct.pack("!H", 500)).digest()
    init_req = message(spii, 0, 34, 0x08, 0, [(33, ikesa), (34, ke(group, pub_i)), (40, ni), (41, notify(0, b"", 16388, nat))])
    init_resp = message(spii, spir, 34, 0x20, 0, [(33, ikesa), (34, ke(group, pub_r)), (40, nr)])

    psk = b"ThisShouldBeAStrongPassword"
    idi, idr = ident(1, bytes([198, 18, 0, 1])), ident(1, bytes([198, 18, 0, 2]))
    kp = prf(prfalg, psk, b"Key Pad for IKEv2")
    auth_i = prf(prfalg, kp, init_req + nr + prf(prfalg, keys["SK_pi"], idi))
    auth_r = prf(prfalg, kp, init_resp + ni + prf(prfalg, keys["SK_pr"], idr))

    # CHILD_SA of IKE_AUTH: no PFS, IKE_SA_INIT nonces, i->r key first.
    childlen = 36
    keymat = prfplus(prfalg, keys["SK_d"], ni + nr, 2 * childlen)

    # CREATE_CHILD_SA child rekey with PFS in the same group.
    ni2, nr2 = seq(0x33, 32), seq(0x99, 32)
    pi2, pr2 = seq(0x05, n), seq(0x06, n)
    if group == 21:
        pi2, pr2 = bytes([pi2[0] & 1]) + pi2[1:], bytes([pr2[0] & 1]) + pr2[1:]
    pub_i2, pub_r2, z2 = dh(group, pi2, pr2)
    keymat_pfs = prfplus(prfalg, keys["SK_d"], z2 + ni2 + nr2, 2 * childlen)

    # IKE SA rekey (RFC 7296 section 2.18) with new SPIs.
    spii2, spir2 = 0x1111111111111111, 0x2222222222222222
    skeyseed2 = prf(prfalg, keys["SK_d"], z2 + ni2 + nr2)
    km2 = prfplus(prfalg, skeyseed2, ni2 + nr2 + struct.pack("!QQ", spii2, spir2), 3 * ps + 2 * enclen)

    # IKE_AUTH request sealed with SK_ei, IV = 1 (RFC 5282).
    espprop = proposal(1, 3, bytes.fromhex("c0ffee01"), [(1, 20, 256), (5, 0)])
    inner = [(35, idi[0:0] + idi), (39, struct.pack("!BBBB", 2, 0, 0, 0) + auth_i), (41, notify(0, b"", 16391)),
             (33, espprop), (44, ts_host(bytes([198, 18, 0, 1]), 47)), (45, ts_host(bytes([198, 18, 0, 2]), 47))]
    plain = chain(inner) + b"\x00"
    iv = struct.pack("!Q", 1)
    sklen = 4 + 8 + len(plain) + 16
    hdr = header(spii, spir, 46, 35, 0x08, 1, 28 + sklen)
    skhdr = struct.pack("!BBH", inner[0][0], 0, sklen)
    key = keys["SK_ei"]
    ct = AESGCM(key[:-4]).encrypt(key[-4:] + iv, plain, hdr + skhdr)
    auth_msg = hdr + skhdr + iv + ct

    return {
        "name": name, "group": group, "prf": prfalg, "key_bits": keybits,
        "ni": ni.hex(), "nr": nr.hex(), "spi_i": "%016x" % spii, "spi_r": "%016x" % spir,
        "priv_i": priv_i.hex(), "priv_r": priv_r.hex(), "pub_i": pub_i.hex(), "pub_r": pub_r.hex(),
        "shared": z.hex(), "skeyseed": skeyseed.hex(),
        "sk_d": keys["SK_d"].hex(), "sk_ei": keys["SK_ei"].hex(), "sk_er": keys["SK_er"].hex(),
        "sk_pi": keys["SK_pi"].hex(), "sk_pr": keys["SK_pr"].hex(),
        "psk": psk.hex(), "init_req": init_req.hex(), "init_resp": init_resp.hex(),
        "auth_i": auth_i.hex(), "auth_r": auth_r.hex(),
        "child_i2r": keymat[:childlen].hex(), "child_r2i": keymat[childlen:].hex(),
        "ni2": ni2.hex(), "nr2": nr2.hex(), "priv_i2": pi2.hex(), "priv_r2": pr2.hex(),
        "shared2": z2.hex(),
        "pfs_i2r": keymat_pfs[:childlen].hex(), "pfs_r2i": keymat_pfs[childlen:].hex(),
        "spi_i2": "%016x" % spii2, "spi_r2": "%016x" % spir2, "skeyseed_rekey": skeyseed2.hex(),
        "rekey_sk_d": km2[:ps].hex(), "rekey_sk_ei": km2[ps:ps + enclen].hex(),
        "auth_msg": auth_msg.hex(),
    }

cases = [
    case("iked-ios ecp384 prfsha384 aes256", 20, 6, 256),
    case("ecp256 prfsha256 aes128", 19, 5, 128),
    case("ecp521 prfsha512 aes256", 21, 7, 256),
    case("curve25519 prfsha256 aes256", 31, 5, 256),
    case("modp2048 prfsha384 aes256", 14, 6, 256),
]
json.dump({"generator": "gen_vectors.py (python cryptography %s)" % __import__("cryptography").__version__, "cases": cases},
          sys.stdout, indent=1)
sys.stdout.write("\n")
