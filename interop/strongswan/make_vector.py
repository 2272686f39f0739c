#!/usr/bin/python3
"""Regenerate ike/testdata/strongswan: a real strongSwan <-> strongSwan IKEv2 exchange.

Run as root with Debian's python (/usr/bin/python3, for `cryptography`):

    sudo /usr/bin/python3 interop/strongswan/make_vector.py [outdir]

It builds xfrmshim.so, creates two network namespaces joined by veth
(198.18.0.1 initiator, 198.18.0.2 responder), runs one charon in each
(private /run, own strongswan.conf and vici socket, LD_PRELOAD shim), captures
UDP 500/4500 with tcpdump in the initiator's namespace and runs:

    IKE_SA_INIT, IKE_AUTH (+ CHILD_SA), CREATE_CHILD_SA (child rekey, PFS),
    INFORMATIONAL (delete old child), INFORMATIONAL (delete IKE SA)

Then it writes exchange.pcap, initiator.log, responder.log and vector.json.
Every value in vector.json is taken from the wire or from charon's level-4
log AND recomputed independently here (SKEYSEED, prf+, AEAD decryption of
every SK payload, both AUTH values from the PSK, both KEYMATs); the script
fails instead of writing a vector that does not check out.

Everything it starts is stopped by PID and the namespaces are deleted, also
on failure.
"""

import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHARON = "/usr/lib/ipsec/charon"
PSK = b"gresec-test-psk-not-a-secret"
INIT_IP, RESP_IP = "198.18.0.1", "198.18.0.2"
IKE_PROPOSAL = "aes256gcm16-prfsha384-ecp384"
ESP_PROPOSAL = "aes256gcm16-ecp384"
PLUGINS = ("random nonce openssl aes sha1 sha2 hmac gcm pem pkcs1 x509 pubkey "
           "kdf kernel-netlink socket-default vici")

STRONGSWAN_CONF = """charon {{
  load = {plugins}
  install_routes = no
  install_virtual_ip = no
  plugins {{
    vici {{
      socket = unix://{dir}/charon.vici
    }}
  }}
  syslog {{
  }}
  filelog {{
    charon {{
      path = {dir}/charon.log
      time_format = %H:%M:%S
      ike_name = yes
      append = no
      flush_line = yes
      default = 1
      ike = 4
      chd = 4
      net = 4
      enc = 1
      cfg = 2
      knl = 2
    }}
  }}
}}
swanctl {{
  load = random nonce openssl aes sha1 sha2 hmac gcm pem pkcs1 x509 pubkey
}}
"""

SWANCTL_CONF = """connections {{
  gre {{
    version = 2
    local_addrs = {local}
    remote_addrs = {remote}
    proposals = {ike}
    mobike = no
    local {{
      auth = psk
      id = {local}
    }}
    remote {{
      auth = psk
      id = {remote}
    }}
    children {{
      gre {{
        mode = transport
        policies = no
        local_ts = dynamic[gre]
        remote_ts = dynamic[gre]
        esp_proposals = {esp}
        start_action = none
      }}
    }}
  }}
}}
secrets {{
  ike-gre {{
    id-a = {local}
    id-b = {remote}
    secret = "{psk}"
  }}
}}
"""


def run(*args, check=True, env=None, timeout=30):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), p.returncode, out.strip()))
    return out


def wait_for(what, cond, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def stop_pid(proc, sig=signal.SIGTERM, grace=10.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Site:
    """One charon in one namespace."""

    def __init__(self, work, name, ns, local, remote, shim):
        self.dir = os.path.join(work, name)
        self.ns = ns
        os.makedirs(os.path.join(self.dir, "run"))
        sw = os.path.join(self.dir, "swanctl")
        for sub in ("x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey",
                    "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12"):
            os.makedirs(os.path.join(sw, sub))
        self.conf = os.path.join(self.dir, "strongswan.conf")
        with open(self.conf, "w") as f:
            f.write(STRONGSWAN_CONF.format(plugins=PLUGINS, dir=self.dir))
        self.swconf = os.path.join(sw, "swanctl.conf")
        with open(self.swconf, "w") as f:
            f.write(SWANCTL_CONF.format(local=local, remote=remote, ike=IKE_PROPOSAL,
                                        esp=ESP_PROPOSAL, psk=PSK.decode()))
        self.uri = "unix://" + os.path.join(self.dir, "charon.vici")
        self.log = os.path.join(self.dir, "charon.log")
        self.stderr = open(os.path.join(self.dir, "stderr"), "wb")
        # ip netns exec -> unshare -> sh -> charon all exec, so the PID is charon's.
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
             "sh", "-c", 'mount --bind "$0/run" /run && exec "$@"', self.dir,
             "env", "STRONGSWAN_CONF=" + self.conf, "LD_PRELOAD=" + shim, "XFRMSHIM_VERBOSE=1",
             CHARON],
            stdout=self.stderr, stderr=self.stderr)
        wait_for("vici of " + name, lambda: self.swanctl("--stats", check=False).startswith("uptime"))

    def swanctl(self, *args, check=True):
        env = dict(os.environ, STRONGSWAN_CONF=self.conf)
        return run("swanctl", *args, "--uri", self.uri, check=check, env=env)

    def stop(self):
        stop_pid(self.proc)
        self.stderr.close()


# ---------------------------------------------------------------- crypto

def prf(key, data):
    return hmac.new(key, data, hashlib.sha384).digest()


def prf_plus(key, seed, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = prf(key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:n]


def sk_decrypt(msg, key):
    """Opens the SK payload of an IKE message (RFC 5282, 8-byte IV, 16-byte ICV).

    Returns (first inner payload type, inner payload chain without padding)."""
    first = msg[16]
    if first != 46:
        raise ValueError("SK is not the first payload")
    sk_len = struct.unpack(">H", msg[30:32])[0]
    body = msg[32:28 + sk_len]
    iv, ct = body[:8], body[8:]
    aad = msg[:32]
    pt = AESGCM(key[:32]).decrypt(key[32:36] + iv, ct, aad)
    inner_next = msg[28]
    padlen = pt[-1]
    return inner_next, pt[:len(pt) - 1 - padlen]


def payloads(first, data):
    """[(type, body)] of a payload chain."""
    out, t, off = [], first, 0
    while t != 0:
        nxt, _, ln = struct.unpack(">BBH", data[off:off + 4])
        if ln < 4 or off + ln > len(data):
            raise ValueError("bad payload length")
        out.append((t, data[off + 4:off + ln]))
        t, off = nxt, off + ln
    return out


def sa_spi(sa_body):
    """SPI of the first proposal of an SA payload body."""
    spi_size = sa_body[6]
    return sa_body[8:8 + spi_size]


# ---------------------------------------------------------------- pcap

def read_pcap(path):
    """UDP datagrams on port 500/4500 as dicts (src, dst, sport, dport, payload)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    end = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    linktype = struct.unpack(end + "I", data[20:24])[0]
    off, out = 24, []
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
        if off + 16 + incl > len(data):
            break  # still being written
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if linktype == 1:  # Ethernet
            if struct.unpack(">H", pkt[12:14])[0] != 0x0800:
                continue
            ip = pkt[14:]
        elif linktype == 113:  # Linux cooked
            ip = pkt[16:]
        else:
            raise ValueError("unexpected linktype %d" % linktype)
        if ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        sport, dport, ulen = struct.unpack(">HHH", ip[ihl:ihl + 6])
        payload = ip[ihl + 8:ihl + ulen]
        if dport == 4500 or sport == 4500:
            if payload[:4] == b"\0\0\0\0":
                payload = payload[4:]  # non-ESP marker
            else:
                continue
        out.append(dict(src=socket.inet_ntoa(ip[12:16]), dst=socket.inet_ntoa(ip[16:20]),
                        sport=sport, dport=dport, payload=payload))
    return out


# ---------------------------------------------------------------- charon log

LINE = re.compile(r"^\S+ (\d+)\[(\w+)\] (?:<[^>]*> )?(.*)$")
DUMP = re.compile(r"^(.*) => (\d+) bytes @ 0x[0-9a-f]+$")
HEXL = re.compile(r"^\s*\d+: ((?:[0-9A-F]{2} ?)+)")


def parse_dumps(path):
    """[(thread, group, label, bytes)] for every `label => N bytes @ addr` hexdump."""
    out, cur = [], {}
    with open(path, errors="replace") as f:
        for raw in f:
            m = LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            thread, group, msg = m.groups()
            h = HEXL.match(msg)
            if h and thread in cur:
                cur[thread][3].extend(bytes.fromhex(h.group(1).replace(" ", "")))
                continue
            if thread in cur:
                out.append(cur.pop(thread))
            d = DUMP.match(msg)
            if d:
                cur[thread] = [thread, group, d.group(1).strip(), bytearray()]
    out.extend(cur.values())
    return [(t, g, label, bytes(b)) for t, g, label, b in out]


def dumps_labelled(dumps, label):
    return [b for _, _, lab, b in dumps if lab == label]


# ---------------------------------------------------------------- main

def main():
    if os.geteuid() != 0:
        sys.exit("make_vector.py: needs root (network namespaces, charon, tcpdump)")
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "ike", "testdata", "strongswan")
    work = tempfile.mkdtemp(prefix="gresec-swan-vector-")
    tag = "%d" % os.getpid()
    ns_i, ns_r = "gsv-i-" + tag, "gsv-r-" + tag
    created, sites, tcpdump = [], [], None
    try:
        shim = os.path.join(work, "xfrmshim.so")
        run("gcc", "-O2", "-Wall", "-Wextra", "-fPIC", "-shared", "-o", shim,
            os.path.join(HERE, "xfrmshim.c"), "-ldl")
        for ns in (ns_i, ns_r):
            run("ip", "netns", "add", ns)
            created.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "link", "add", "gsv0", "netns", ns_i, "type", "veth", "peer", "name", "gsv1",
            "netns", ns_r)
        run("ip", "-n", ns_i, "addr", "add", INIT_IP + "/24", "dev", "gsv0")
        run("ip", "-n", ns_r, "addr", "add", RESP_IP + "/24", "dev", "gsv1")
        run("ip", "-n", ns_i, "link", "set", "gsv0", "up")
        run("ip", "-n", ns_r, "link", "set", "gsv1", "up")

        pcap = os.path.join(work, "exchange.pcap")
        tcpdump_err = open(os.path.join(work, "tcpdump.err"), "wb")
        tcpdump = subprocess.Popen(["ip", "netns", "exec", ns_i, "tcpdump", "-i", "gsv0", "-n", "-U", "--immediate-mode",
                                    "-s", "0", "-w", pcap, "udp port 500 or udp port 4500"],
                                   stdout=tcpdump_err, stderr=tcpdump_err)
        wait_for("tcpdump", lambda: b"listening on" in open(tcpdump_err.name, "rb").read())

        ini = Site(work, "initiator", ns_i, INIT_IP, RESP_IP, shim)
        sites.append(ini)
        resp = Site(work, "responder", ns_r, RESP_IP, INIT_IP, shim)
        sites.append(resp)
        for s in sites:
            s.swanctl("--load-all", "--noprompt", "--file", s.swconf)

        ini.swanctl("--initiate", "--child", "gre", "--timeout", "20")
        for s in sites:
            wait_for("CHILD_SA INSTALLED", lambda s=s: "INSTALLED, TRANSPORT" in s.swanctl("--list-sas"))
        ini.swanctl("--rekey", "--child", "gre")
        for s in sites:
            wait_for("rekeyed CHILD_SA", lambda s=s: "ESP:AES_GCM_16-256/ECP_384" in s.swanctl("--list-sas"))
        # INIT, AUTH, CREATE_CHILD_SA and the DELETE of the old child: 8 datagrams.
        wait_for("8 datagrams in the capture", lambda: len(read_pcap(pcap)) >= 8)
        ini.swanctl("--terminate", "--ike", "gre", "--timeout", "10")
        wait_for("IKE_SA gone", lambda: "ESTABLISHED" not in resp.swanctl("--list-sas"))
        # INIT, AUTH, CREATE_CHILD_SA, 2 x INFORMATIONAL: 10 datagrams.
        wait_for("10 datagrams in the capture", lambda: len(read_pcap(pcap)) >= 10)
    finally:
        for s in sites:
            s.stop()
        stop_pid(tcpdump, signal.SIGINT)
        for ns in created:
            run("ip", "netns", "delete", ns, check=False)

    vec = build_vector(pcap, ini.log, resp.log)
    os.makedirs(outdir, exist_ok=True)
    shutil.copy(pcap, os.path.join(outdir, "exchange.pcap"))
    shutil.copy(ini.log, os.path.join(outdir, "initiator.log"))
    shutil.copy(resp.log, os.path.join(outdir, "responder.log"))
    with open(os.path.join(outdir, "vector.json"), "w") as f:
        json.dump(vec, f, indent=2)
        f.write("\n")
    shutil.rmtree(work)
    print("wrote", outdir)


def one(values, what):
    if len(values) < 1:
        raise RuntimeError("log lacks " + what)
    return values[0]


def build_vector(pcap, ilog, rlog):
    msgs = read_pcap(pcap)
    idumps, rdumps = parse_dumps(ilog), parse_dumps(rlog)
    hx = bytes.hex

    def exch(m):
        return m["payload"][18], bool(m["payload"][19] & 0x20), struct.unpack(">I", m["payload"][20:24])[0]

    init_req = next(m for m in msgs if exch(m) == (34, False, 0) and m["src"] == INIT_IP)
    init_resp = next(m for m in msgs if exch(m) == (34, True, 0) and m["src"] == RESP_IP)
    auth_req = next(m for m in msgs if exch(m) == (35, False, 1) and m["src"] == INIT_IP)
    auth_resp = next(m for m in msgs if exch(m) == (35, True, 1) and m["src"] == RESP_IP)

    ireq, irsp = init_req["payload"], init_resp["payload"]
    spi_i, spi_r = ireq[0:8], irsp[8:16]
    p_req, p_rsp = dict(payloads(ireq[16], ireq[28:])), dict(payloads(irsp[16], irsp[28:]))
    ni, nr = p_req[40], p_rsp[40]
    group = struct.unpack(">H", p_req[34][:2])[0]
    ke_i, ke_r = p_req[34][4:], p_rsp[34][4:]

    # From the logs (both sides must agree).
    g_ir = one(dumps_labelled(idumps, "shared Diffie Hellman secret"), "DH secret")
    skeyseed = one(dumps_labelled(idumps, "SKEYSEED"), "SKEYSEED")
    sk = {name: one(dumps_labelled(idumps, "Sk_%s secret" % name), "Sk_" + name)
          for name in ("d", "ei", "er", "pi", "pr")}
    for name, label in (("g_ir", "shared Diffie Hellman secret"), ("skeyseed", "SKEYSEED")):
        if one(dumps_labelled(rdumps, label), label) != {"g_ir": g_ir, "skeyseed": skeyseed}[name]:
            raise RuntimeError("initiator and responder logs disagree on " + label)
    for name in sk:
        if one(dumps_labelled(rdumps, "Sk_%s secret" % name), name) != sk[name]:
            raise RuntimeError("logs disagree on Sk_" + name)

    # Recompute RFC 7296 §2.14 from the wire and the logged g^ir.
    if prf(ni + nr, g_ir) != skeyseed:
        raise RuntimeError("SKEYSEED != prf(Ni | Nr, g^ir)")
    keys = prf_plus(skeyseed, ni + nr + spi_i + spi_r, 48 + 36 + 36 + 48 + 48)
    want = dict(d=keys[0:48], ei=keys[48:84], er=keys[84:120], pi=keys[120:168], pr=keys[168:216])
    if want != sk:
        raise RuntimeError("prf+ does not reproduce the logged SK_*")

    # IKE_AUTH: decrypt, pick IDs and AUTH, recompute AUTH from the PSK.
    areq, arsp = auth_req["payload"], auth_resp["payload"]
    f1, pt_req = sk_decrypt(areq, sk["ei"])
    f2, pt_rsp = sk_decrypt(arsp, sk["er"])
    in_req, in_rsp = payloads(f1, pt_req), payloads(f2, pt_rsp)
    d_req, d_rsp = dict(in_req), dict(in_rsp)
    id_i, id_r = d_req[35], d_rsp[36]
    auth_i, auth_r = d_req[39], d_rsp[39]
    keypad = prf(PSK, b"Key Pad for IKEv2")
    if auth_i[0] != 2 or prf(keypad, ireq + nr + prf(sk["pi"], id_i)) != auth_i[4:]:
        raise RuntimeError("AUTH_i does not verify")
    if auth_r[0] != 2 or prf(keypad, irsp + ni + prf(sk["pr"], id_r)) != auth_r[4:]:
        raise RuntimeError("AUTH_r does not verify")

    child_spi_i, child_spi_r = sa_spi(d_req[33]), sa_spi(d_rsp[33])
    keymat = prf_plus(sk["d"], ni + nr, 72)
    child = dict(spi_i=hx(child_spi_i), spi_r=hx(child_spi_r),
                 keymat=hx(keymat), key_i2r=hx(keymat[:36]), key_r2i=hx(keymat[36:]))
    check_child_keys(idumps, rdumps, keymat, 0)

    # CREATE_CHILD_SA (rekey with PFS).
    rekey = None
    creq = [m for m in msgs if m["payload"][18] == 36 and not m["payload"][19] & 0x20]
    crsp = [m for m in msgs if m["payload"][18] == 36 and m["payload"][19] & 0x20]
    if creq and crsp:
        qreq, qrsp = creq[0]["payload"], crsp[0]["payload"]
        g1, cpt_req = sk_decrypt(qreq, sk["ei"])
        g2, cpt_rsp = sk_decrypt(qrsp, sk["er"])
        cq, cr = dict(payloads(g1, cpt_req)), dict(payloads(g2, cpt_rsp))
        c_ni, c_nr = cq[40], cr[40]
        c_kei, c_ker = cq[34][4:], cr[34][4:]
        c_gir = one(dumps_labelled(idumps, "DH secret"), "CHILD DH secret")
        if one(dumps_labelled(rdumps, "DH secret"), "CHILD DH secret") != c_gir:
            raise RuntimeError("logs disagree on the rekey DH secret")
        ckm = prf_plus(sk["d"], c_gir + c_ni + c_nr, 72)
        check_child_keys(idumps, rdumps, ckm, 1)
        rekey = dict(
            request=hx(qreq), response=hx(qrsp),
            request_plaintext=hx(cpt_req), response_plaintext=hx(cpt_rsp),
            request_first_payload=g1, response_first_payload=g2,
            msgid=struct.unpack(">I", qreq[20:24])[0],
            dh_group=struct.unpack(">H", cq[34][:2])[0],
            ni=hx(c_ni), nr=hx(c_nr), ke_i=hx(c_kei), ke_r=hx(c_ker), g_ir=hx(c_gir),
            spi_i=hx(sa_spi(cq[33])), spi_r=hx(sa_spi(cr[33])),
            keymat=hx(ckm), key_i2r=hx(ckm[:36]), key_r2i=hx(ckm[36:]),
        )

    def describe(m):
        p = m["payload"]
        d = dict(src=m["src"], dst=m["dst"], sport=m["sport"], dport=m["dport"],
                 exchange=p[18], response=bool(p[19] & 0x20), initiator=bool(p[19] & 0x08),
                 msgid=struct.unpack(">I", p[20:24])[0], bytes=hx(p))
        if p[16] == 46 and p[0:8] == spi_i and p[8:16] == spi_r:
            # The original initiator's messages are protected with SK_ei.
            first, pt = sk_decrypt(p, sk["ei"] if p[19] & 0x08 else sk["er"])
            payloads(first, pt)  # must parse
            d.update(first_payload=first, plaintext=hx(pt))
        return d

    return {
        "comment": ("strongSwan 5.9.8 (Debian 12) initiator 198.18.0.1 <-> responder 198.18.0.2, "
                    "UDP 500, no NAT. Regenerate with interop/strongswan/make_vector.py. All byte "
                    "strings are hex. Every key below was recomputed from the wire and the logged "
                    "g^ir by make_vector.py (RFC 7296 2.14/2.15/2.17) before it was written."),
        "strongswan_version": "5.9.8",
        "ike_proposal": "ENCR_AES_GCM_16 (20) key 256, PRF_HMAC_SHA2_384 (6), ECP_384 (20)",
        "esp_proposal": "ENCR_AES_GCM_16 (20) key 256, no ESN; PFS ECP_384 on rekey only",
        "initiator_ip": INIT_IP, "responder_ip": RESP_IP,
        "psk": hx(PSK), "psk_text": PSK.decode(),
        "spi_i": hx(spi_i), "spi_r": hx(spi_r),
        "ni": hx(ni), "nr": hx(nr),
        "dh_group": group, "ke_i": hx(ke_i), "ke_r": hx(ke_r),
        "g_ir": hx(g_ir), "skeyseed": hx(skeyseed),
        "sk_d": hx(sk["d"]), "sk_ai": "", "sk_ar": "",
        "sk_ei": hx(sk["ei"]), "sk_er": hx(sk["er"]),
        "sk_pi": hx(sk["pi"]), "sk_pr": hx(sk["pr"]),
        "ike_sa_init_request": hx(ireq), "ike_sa_init_response": hx(irsp),
        "ike_auth_request": hx(areq), "ike_auth_response": hx(arsp),
        "ike_auth_request_plaintext": hx(pt_req), "ike_auth_response_plaintext": hx(pt_rsp),
        "ike_auth_request_first_payload": f1, "ike_auth_response_first_payload": f2,
        "id_i": hx(id_i), "id_r": hx(id_r),
        "auth_method": 2,
        "auth_i": hx(auth_i[4:]), "auth_r": hx(auth_r[4:]),
        "child": child,
        "rekey": rekey,
        "messages": [describe(m) for m in msgs],
        "notes": {
            "ke": "KE payload data after the 4-byte group/reserved header (ECP: x | y, 48 bytes each).",
            "id": "ID payload body after the generic header: type(1) reserved(3) data (RFC 7296 IDx').",
            "auth": "AUTH data without the method/reserved header; method 2 = shared key MIC.",
            "plaintext": "decrypted SK payload: inner payload chain, padding and pad length removed; "
                         "*_first_payload is the SK payload's Next Payload.",
            "child": "spi_i/spi_r: SPIs chosen by initiator/responder (in their SA payloads). "
                     "keymat = prf+(SK_d, Ni | Nr) (rekey: prf+(SK_d, g^ir(new) | Ni | Nr)); "
                     "key_i2r = keymat[0:36] protects initiator->responder traffic, sent with spi_r; "
                     "key_r2i = keymat[36:72], sent with spi_i. Each is AES-256 key (32) + salt (4).",
            "messages": "every IKE datagram in exchange.pcap in order (UDP payload); exchange "
                        "34 IKE_SA_INIT, 35 IKE_AUTH, 36 CREATE_CHILD_SA, 37 INFORMATIONAL; "
                        "encrypted ones also carry first_payload and plaintext (opened with SK_ei "
                        "when the Initiator flag is set, else SK_er).",
        },
    }


def check_child_keys(idumps, rdumps, keymat, n):
    """The n-th child key pair logged by both sides equals keymat."""
    for dumps in (idumps, rdumps):
        ki = dumps_labelled(dumps, "encryption initiator key")
        kr = dumps_labelled(dumps, "encryption responder key")
        if len(ki) <= n or len(kr) <= n:
            raise RuntimeError("log lacks child keys #%d" % n)
        if ki[n] + kr[n] != keymat:
            raise RuntimeError("child keys #%d do not match prf+(SK_d, ...)" % n)


if __name__ == "__main__":
    main()
