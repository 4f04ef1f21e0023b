#!/usr/bin/env python3
"""Regenerates the known-answer fixtures of the dco-crypto tests from real stock OpenVPN.

What it does (needs root; Debian; python3 standard library only):

1. Makes a throw-away PKI with the openssl CLI and a tls-crypt key with openvpn --genkey.
2. Joins two network namespaces (cf-kat-<pid>-s/-c) with a veth pair and runs two stock
   `openvpn` 2.6 processes in them, server and client, with the minimal config pair of
   openvpn-protocol.md section 10.2 (--disable-dco, keepalive 1 10), once per data cipher:
   AES-256-GCM, AES-128-GCM, CHACHA20-POLY1305 (TLS-EKM key derivation, the 2.6 default),
   once with AES-128-GCM where the client hides IV_PROTO_TLS_KEY_EXPORT from the server, so
   both fall back to the legacy TLS1-PRF derivation, and once with CHACHA20-POLY1305 where
   the client hides IV_PROTO_DATA_V2, so no peer-id is pushed and both send P_DATA_V1.
3. Pings through the tunnel both ways, waits for keepalive pings, captures the UDP traffic
   with tcpdump and keeps a handful of data packets each way (at least one keepalive).
4. Takes the keys the processes used:
   - TLS-EKM runs: an LD_PRELOAD shim (C, compiled here with gcc, never committed as a
     binary) logs the 256-byte output of SSL_export_keying_material;
   - TLS1-PRF run: OpenVPN's verb-9 log prints the key-method-2 key sources (pre_master,
     random1, random2), and the session ids are read from the captured hard-reset packets;
   - every run: the per-direction cipher keys and implicit IVs OpenVPN printed at verb 7+
     ("Master Encrypt"/"Master Decrypt" = keys[0]/keys[1] whatever the role), kept beside
     the key2 as an independent check of our split.
5. Computes the TLS1-PRF key expansion with Python's hmac/hashlib (an implementation that
   shares nothing with the Rust crate) for the live PRF inputs and for a fixed synthetic
   input, and checks it against what OpenVPN logged.

Outputs (small, a few KB): crypto/tests/fixtures/openvpn_kat.json and
crypto/tests/fixtures/tls1_prf_kat.json. Usage:

    sudo python3 crypto/scripts/gen_openvpn_fixtures.py [--keep] [--out DIR]
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

# Names carry the process id so two runs (a test and a regeneration) never collide.
_RUN = os.getpid() % 100000
NS_SERVER = f"cf-kat-{_RUN}-s"
NS_CLIENT = f"cf-kat-{_RUN}-c"
VETH_SERVER = f"cfk{_RUN}s"
VETH_CLIENT = f"cfk{_RUN}c"
TUN = "cftun0"
SERVER_IP = "10.213.7.1"
CLIENT_IP = "10.213.7.2"
VPN_SERVER_IP = "10.8.0.1"
VPN_CLIENT_IP = "10.8.0.2"
PORT = 1194

KEEPALIVE_PING = bytes.fromhex("2a187bf3641eb4cb07ed2d0a981fc748")
P_DATA_V1 = 6
P_DATA_V2 = 9
DATA_V1_OVERHEAD = 21
DATA_V2_OVERHEAD = 24
# Packets kept per direction and session: ICMP packets and keepalive pings.
KEEP_ICMP = 3
KEEP_PINGS = 1

SHIM_C = r"""
/* LD_PRELOAD shim for the dco-crypto fixture generator.
 * - logs every SSL_export_keying_material call (label, flag, output) to $CF_EKM_LOG;
 * - with $CF_IV_PROTO_CLEAR=<mask> set, rewrites "IV_PROTO=<n>" in the plaintext the
 *   process writes to TLS (its peer-info) to n & ~mask. Clearing bit 3
 *   (IV_PROTO_TLS_KEY_EXPORT) makes the server push no tls-ekm, so both peers derive data
 *   keys with the legacy TLS1-PRF; clearing bit 1 (IV_PROTO_DATA_V2) makes it push no
 *   peer-id, so both peers send P_DATA_V1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*ekm_fn)(void *, unsigned char *, size_t, const char *, size_t,
                      const unsigned char *, size_t, int);
typedef int (*bio_write_fn)(void *, const void *, int);

int SSL_export_keying_material(void *s, unsigned char *out, size_t olen, const char *label,
                               size_t llen, const unsigned char *ctx, size_t clen,
                               int use_ctx)
{
    ekm_fn real = (ekm_fn)dlsym(RTLD_NEXT, "SSL_export_keying_material");
    int rc = real(s, out, olen, label, llen, ctx, clen, use_ctx);
    const char *path = getenv("CF_EKM_LOG");
    if (path) {
        FILE *f = fopen(path, "a");
        if (f) {
            fprintf(f, "label=%.*s use_context=%d rc=%d out=", (int)llen, label, use_ctx, rc);
            for (size_t i = 0; i < olen; i++)
                fprintf(f, "%02x", out[i]);
            fprintf(f, "\n");
            fclose(f);
        }
    }
    return rc;
}

int BIO_write(void *b, const void *data, int dlen)
{
    bio_write_fn real = (bio_write_fn)dlsym(RTLD_NEXT, "BIO_write");
    static const char needle[] = "\nIV_PROTO=";
    const char *p;
    const char *mask_env = getenv("CF_IV_PROTO_CLEAR");
    if (!mask_env || dlen <= 0 || !data)
        return real(b, data, dlen);
    p = memmem(data, (size_t)dlen, needle, sizeof(needle) - 1);
    if (!p)
        return real(b, data, dlen);
    {
        char *copy = malloc((size_t)dlen);
        char *digits, *end;
        size_t width;
        unsigned long v;
        int rc;
        if (!copy)
            return real(b, data, dlen);
        memcpy(copy, data, (size_t)dlen);
        digits = copy + (p - (const char *)data) + sizeof(needle) - 1;
        end = digits;
        while (end < copy + dlen && *end >= '0' && *end <= '9')
            end++;
        width = (size_t)(end - digits);
        v = strtoul(digits, NULL, 10) & ~strtoul(mask_env, NULL, 10);
        {
            char tmp[32];
            /* Same width, zero padded: the record length does not change, atoi reads it. */
            snprintf(tmp, sizeof(tmp), "%0*lu", (int)width, v);
            if (strlen(tmp) == width)
                memcpy(digits, tmp, width);
        }
        rc = real(b, copy, dlen);
        free(copy);
        return rc;
    }
}
"""


def log(msg):
    print(f"[gen-fixtures] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools():
    missing = [t for t in ("openvpn", "tcpdump", "openssl", "gcc") if shutil.which(t) is None]
    if missing:
        pkgs = {"openvpn": "openvpn", "tcpdump": "tcpdump", "openssl": "openssl", "gcc": "gcc"}
        log(f"installing {missing} with apt-get")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "--no-install-recommends"] + [pkgs[m] for m in missing])


# ---------------------------------------------------------------------------------------
# PKI, shim, namespaces


def make_pki(d):
    def ossl(*args):
        run(["openssl", *args], cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=cf-kat-ca")
    exts = {
        "server": "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\n"
                  "extendedKeyUsage=serverAuth\n",
        "client": "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\n"
                  "extendedKeyUsage=clientAuth\n",
    }
    for name, ext in exts.items():
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        ossl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=cf-kat-{name}")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    run(["openvpn", "--genkey", "tls-crypt", os.path.join(d, "tc.key")],
        stdout=subprocess.DEVNULL)


def build_shim(d):
    src = os.path.join(d, "cfshim.c")
    so = os.path.join(d, "cfshim.so")
    with open(src, "w") as f:
        f.write(SHIM_C)
    run(["gcc", "-shared", "-fPIC", "-O2", "-o", so, src, "-ldl"])
    return so


def ns_cleanup():
    for ns in (NS_SERVER, NS_CLIENT):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def ns_setup():
    ns_cleanup()
    run(["ip", "netns", "add", NS_SERVER])
    run(["ip", "netns", "add", NS_CLIENT])
    run(["ip", "link", "add", VETH_SERVER, "type", "veth", "peer", "name", VETH_CLIENT])
    for ns, dev, ip in ((NS_SERVER, VETH_SERVER, SERVER_IP), (NS_CLIENT, VETH_CLIENT, CLIENT_IP)):
        run(["ip", "link", "set", dev, "netns", ns])
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # No IPv6 chatter (router solicitations) inside the tunnel: only our pings.
        for key in ("all", "default"):
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"])


# ---------------------------------------------------------------------------------------
# One OpenVPN session


def write_configs(d, cipher, verb):
    common = f"""dev {TUN}
dev-type tun
proto udp
ca {d}/ca.crt
tls-crypt {d}/tc.key
data-ciphers {cipher}
disable-dco
explicit-exit-notify 1
verb {verb}
"""
    server = f"""local {SERVER_IP}
port {PORT}
topology subnet
server 10.8.0.0 255.255.255.0
cert {d}/server.crt
key {d}/server.key
dh none
keepalive 1 10
""" + common
    client = f"""client
remote {SERVER_IP} {PORT}
nobind
cert {d}/client.crt
key {d}/client.key
remote-cert-tls server
""" + common
    paths = {}
    for name, text in (("server", server), ("client", client)):
        p = os.path.join(d, f"{name}.conf")
        with open(p, "w") as f:
            f.write(text)
        paths[name] = p
    return paths


def wait_for(path, needle, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(path, errors="replace") as f:
                if needle in f.read():
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    return False


def stop(p, sig=signal.SIGTERM, timeout=5):
    if p is None or p.poll() is not None:
        return
    p.send_signal(sig)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


# Variants of a session: how the client's IV_PROTO is trimmed, and what that gives.
VARIANTS = {
    "ekm": 0,  # stock behaviour: TLS-EKM keys, P_DATA_V2 with peer-id
    "prf": 8,  # no IV_PROTO_TLS_KEY_EXPORT: legacy TLS1-PRF keys
    "v1": 2,   # no IV_PROTO_DATA_V2: no peer-id pushed, P_DATA_V1 both ways
}


def run_session(d, shim, cipher, variant):
    tag = f"{cipher.lower()}-{variant}"
    sd = os.path.join(d, tag)
    os.makedirs(sd)
    # verb 9 prints the key-method-2 key sources the PRF derivation needs.
    verb = 9 if variant == "prf" else 7
    cfg = write_configs(d, cipher, verb)
    logs = {n: os.path.join(sd, f"{n}.log") for n in ("server", "client")}
    ekm_logs = {n: os.path.join(sd, f"{n}.ekm") for n in ("server", "client")}
    pcap = os.path.join(sd, "cap.pcap")
    procs = []
    try:
        tcpdump = subprocess.Popen(
            ["ip", "netns", "exec", NS_SERVER, "tcpdump", "-i", VETH_SERVER, "-U", "-s", "0",
             "-w", pcap, "udp", "port", str(PORT)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(tcpdump)
        time.sleep(0.5)
        for name, ns in (("server", NS_SERVER), ("client", NS_CLIENT)):
            env = dict(os.environ, LD_PRELOAD=shim, CF_EKM_LOG=ekm_logs[name])
            if VARIANTS[variant] and name == "client":
                env["CF_IV_PROTO_CLEAR"] = str(VARIANTS[variant])
            with open(logs[name], "w") as out:
                procs.append(subprocess.Popen(
                    ["ip", "netns", "exec", ns, "openvpn", "--config", cfg[name]],
                    stdout=out, stderr=subprocess.STDOUT, env=env))
            if name == "server":
                time.sleep(0.5)
        for name in ("server", "client"):
            if not wait_for(logs[name], "Initialization Sequence Completed", 30):
                raise RuntimeError(f"{tag}: {name} did not come up; see {logs[name]}")
        # The server's side of the tunnel is up once the client is; give routes a moment.
        time.sleep(0.5)
        for ns, dst in ((NS_CLIENT, VPN_SERVER_IP), (NS_SERVER, VPN_CLIENT_IP)):
            run(["ip", "netns", "exec", ns, "ping", "-c", "2", "-i", "0.3", "-s", "4", "-W", "2", dst],
                stdout=subprocess.DEVNULL)
        # keepalive 1 10: each side sends a ping after a second without sending.
        time.sleep(3.5)
    finally:
        for p in reversed(procs[1:]):
            stop(p)
        time.sleep(0.3)
        stop(procs[0] if procs else None, signal.SIGINT)
    return sd, logs, ekm_logs, pcap


# ---------------------------------------------------------------------------------------
# Parsing captures and logs


def read_pcap(path):
    """UDP payloads (src_port, dst_port, payload) of an Ethernet/IPv4 pcap, in order."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise RuntimeError(f"{path}: not a pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise RuntimeError(f"{path}: link type {linktype}, expected Ethernet")
    off = 24
    out = []
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(frame) < 14 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            continue
        total = struct.unpack(">H", ip[2:4])[0]
        udp = ip[ihl:total]
        sport, dport, ulen = struct.unpack(">HHH", udp[:6])
        out.append((sport, dport, bytes(udp[8:ulen])))
    return out


def ekm_outputs(path):
    res = []
    if not os.path.exists(path):
        return res
    with open(path) as f:
        for line in f:
            m = re.match(r"label=(\S+) use_context=(\d+) rc=(\d+) out=([0-9a-f]*)", line.strip())
            if m:
                res.append((m.group(1), int(m.group(2)), int(m.group(3)), bytes.fromhex(m.group(4))))
    return res


def log_hex(log_text, label):
    """The hex after 'label...: ' on the last matching log line, spaces removed.

    `label` is a regular expression for the text before the colon."""
    vals = re.findall(label + r":[ \t]*([0-9a-fA-F][0-9a-fA-F ]*)$", log_text, re.M)
    if not vals:
        return None
    return bytes.fromhex(vals[-1].replace(" ", ""))


def logged_keys(log_text):
    """The data-channel cipher keys one process printed at verb 7+: keys[0] and keys[1] of
    key2 ("Master Encrypt"/"Master Decrypt" whatever the role) and its own outgoing and
    incoming keys. For AEAD ciphers OpenVPN prints no implicit IV (the hmac part is 0 bits)."""
    return {
        "keys0": log_hex(log_text, r"Master Encrypt \(cipher, [^)]*\)"),
        "keys1": log_hex(log_text, r"Master Decrypt \(cipher, [^)]*\)"),
        "outgoing": log_hex(log_text, r"Outgoing Data Channel: CIPHER KEY"),
        "incoming": log_hex(log_text, r"Incoming Data Channel: CIPHER KEY"),
    }


# ---------------------------------------------------------------------------------------
# TLS1-PRF in Python (independent of the Rust implementation)


def p_hash(digest, secret, seed, n):
    out = b""
    a = seed
    while len(out) < n:
        a = hmac.new(secret, a, digest).digest()
        out += hmac.new(secret, a + seed, digest).digest()
    return out[:n]


def tls1_prf(secret, seed, n):
    half = (len(secret) + 1) // 2
    s1, s2 = secret[:half], secret[len(secret) - half:]
    md5 = p_hash(hashlib.md5, s1, seed, n)
    sha = p_hash(hashlib.sha1, s2, seed, n)
    return bytes(x ^ y for x, y in zip(md5, sha))


def openvpn_key2_prf(pre_master, c_r1, s_r1, c_r2, s_r2, c_sid, s_sid):
    master = tls1_prf(pre_master, b"OpenVPN master secret" + c_r1 + s_r1, 48)
    return tls1_prf(master, b"OpenVPN key expansion" + c_r2 + s_r2 + c_sid + s_sid, 256)


# ---------------------------------------------------------------------------------------


def pick_packets(udp, opcode):
    """A handful of data packets each way: the first ICMP-sized ones and keepalives."""
    overhead = DATA_V2_OVERHEAD if opcode == P_DATA_V2 else DATA_V1_OVERHEAD
    picked = {"c2s": [], "s2c": []}
    counts = {d: {"icmp": 0, "ping": 0} for d in picked}
    for sport, dport, p in udp:
        if p and p[0] >> 3 in (P_DATA_V1, P_DATA_V2) and p[0] >> 3 != opcode:
            raise RuntimeError(f"unexpected data opcode {p[0] >> 3} in the capture")
        if not p or p[0] >> 3 != opcode:
            continue
        d = "s2c" if sport == PORT else "c2s"
        # A 16-byte plaintext can only be the keepalive ping (an IPv4 header alone is 20).
        kind = "ping" if len(p) == overhead + len(KEEPALIVE_PING) else "icmp"
        limit = KEEP_PINGS if kind == "ping" else KEEP_ICMP
        if counts[d][kind] < limit:
            counts[d][kind] += 1
            picked[d].append({"dir": d, "kind": kind, "wire": p.hex()})
    for d, c in counts.items():
        if c["ping"] == 0 or c["icmp"] == 0:
            raise RuntimeError(f"capture has {c} in direction {d}; need ICMP and a keepalive")
    return picked["c2s"] + picked["s2c"]


def session_ids(udp):
    """(client sid, server sid) from the hard-reset packets of key-id 0."""
    c = s = None
    for _, _, p in udp:
        if len(p) >= 9 and p[0] == (7 << 3) and c is None:
            c = p[1:9]
        if len(p) >= 9 and p[0] == (8 << 3) and s is None:
            s = p[1:9]
    if c is None or s is None:
        raise RuntimeError("hard resets not found in the capture")
    return c, s


def build_session(cipher, variant, logs, ekm_logs, pcap):
    hide_ekm = variant == "prf"
    texts = {n: open(p, errors="replace").read() for n, p in logs.items()}
    udp = read_pcap(pcap)
    keylen = {"AES-128-GCM": 16, "AES-256-GCM": 32, "CHACHA20-POLY1305": 32}[cipher]
    k = {n: logged_keys(t) for n, t in texts.items()}
    for n, v in k.items():
        if any(x is None or len(x) != keylen for x in v.values()):
            raise RuntimeError(f"{n}: data-channel keys missing from the log: {v}")
    # Both processes print the same key2 halves; "Master Encrypt" is keys[0] on both.
    if k["server"]["keys0"] != k["client"]["keys0"] or k["server"]["keys1"] != k["client"]["keys1"]:
        raise RuntimeError("server and client logged different key2 halves")
    # What each one actually used: the client sends with keys[0], the server with keys[1].
    c2s, s2c = k["client"]["outgoing"], k["server"]["outgoing"]
    if (c2s, s2c) != (k["server"]["incoming"], k["client"]["incoming"]) \
            or (c2s, s2c) != (k["server"]["keys0"], k["server"]["keys1"]):
        raise RuntimeError(f"unexpected key directions in the logs: {k}")
    sess = {
        "cipher": cipher,
        "key_id": 0,
        "format": "v1" if variant == "v1" else "v2",
        # 2.6 uses the same peer-id both ways; with no peer-id pushed there is none.
        "peer_id": None if variant == "v1" else 0,
        # The cipher key each side sent with, as its own log printed it (no implicit IV is
        # printed for AEAD ciphers; the IVs come from key2 and are proven by decryption).
        "logged_client_to_server_key": c2s.hex(),
        "logged_server_to_client_key": s2c.hex(),
    }
    if not hide_ekm:
        outs = {}
        for n, p in ekm_logs.items():
            got = [o for (label, use_ctx, rc, o) in ekm_outputs(p)
                   if label == "EXPORTER-OpenVPN-datakeys" and rc == 1]
            if len(got) != 1:
                raise RuntimeError(f"{n}: expected one datakeys export, got {len(got)}")
            outs[n] = got[0]
        if outs["server"] != outs["client"]:
            raise RuntimeError("server and client EKM outputs differ")
        key2 = outs["server"]
        if len(key2) != 256:
            raise RuntimeError("EKM output is not 256 bytes")
        sess["key_derivation"] = "tls-ekm"
        sess["ekm"] = key2.hex()
    else:
        if any(ekm_outputs(p) and any(l == "EXPORTER-OpenVPN-datakeys" for (l, *_r) in ekm_outputs(p))
               for p in ekm_logs.values()):
            raise RuntimeError("PRF run used EKM anyway")
        t = texts["server"]
        src = {}
        for who in ("Client", "Server"):
            for f in ("pre_master", "random1", "random2"):
                v = log_hex(t, f"{who} {f}")
                if v is not None:
                    src[f"{who.lower()}_{f}"] = v
        need = ["client_pre_master", "client_random1", "client_random2", "server_random1",
                "server_random2"]
        if any(k not in src for k in need):
            raise RuntimeError(f"key source lines missing from the verb-9 log: have {sorted(src)}")
        c_sid, s_sid = session_ids(udp)
        key2 = openvpn_key2_prf(src["client_pre_master"], src["client_random1"],
                                src["server_random1"], src["client_random2"],
                                src["server_random2"], c_sid, s_sid)
        sess["key_derivation"] = "tls1-prf"
        sess["prf_inputs"] = {
            "pre_master": src["client_pre_master"].hex(),
            "client_random1": src["client_random1"].hex(),
            "server_random1": src["server_random1"].hex(),
            "client_random2": src["client_random2"].hex(),
            "server_random2": src["server_random2"].hex(),
            "client_session_id": c_sid.hex(),
            "server_session_id": s_sid.hex(),
        }
        sess["key2_python_prf"] = key2.hex()
    # The split of openvpn-protocol.md 5.3 must reproduce what OpenVPN printed.
    if key2[0:keylen] != c2s or key2[128:128 + keylen] != s2c:
        raise RuntimeError(f"{cipher}: key2 split does not match the logged keys")
    sess["packets"] = pick_packets(udp, P_DATA_V1 if variant == "v1" else P_DATA_V2)
    return sess


def synthetic_prf_vector():
    """A fixed-input TLS1-PRF key expansion, inputs from SHA-256 of labels (reproducible)."""
    def det(label, n):
        return hashlib.sha512(b"dco-crypto kat " + label.encode()).digest()[:n]

    inp = {
        "pre_master": det("pre_master", 48),
        "client_random1": det("client_random1", 32),
        "server_random1": det("server_random1", 32),
        "client_random2": det("client_random2", 32),
        "server_random2": det("server_random2", 32),
        "client_session_id": det("client_session_id", 8),
        "server_session_id": det("server_session_id", 8),
    }
    master = tls1_prf(inp["pre_master"],
                      b"OpenVPN master secret" + inp["client_random1"] + inp["server_random1"], 48)
    key2 = openvpn_key2_prf(*(inp[k] for k in ("pre_master", "client_random1", "server_random1",
                                               "client_random2", "server_random2",
                                               "client_session_id", "server_session_id")))
    builtin = tls1_prf(b"tls1-prf-test-secret", b"tls1-prf-test", 8)
    if builtin.hex() != "7144fe2540737595":
        raise RuntimeError("python PRF disagrees with OpenVPN's built-in self-test vector")
    return {
        "generator": "crypto/scripts/gen_openvpn_fixtures.py (python hmac/hashlib)",
        "prf_builtin": {"secret": b"tls1-prf-test-secret".hex(), "seed": b"tls1-prf-test".hex(),
                        "out": builtin.hex()},
        # An odd-length secret: the two halves share the middle byte (RFC 2246 5).
        "prf_odd_secret": {"secret": b"abcdefghijklmnopq".hex(), "seed": b"seed of odd".hex(),
                           "out": tls1_prf(b"abcdefghijklmnopq", b"seed of odd", 100).hex()},
        "key_expansion": {**{k: v.hex() for k, v in inp.items()},
                          "master": master.hex(), "key2": key2.hex()},
    }


def dump(obj):
    """Indented JSON with one packet per line."""
    text = json.dumps(obj, indent=1)
    text = re.sub(r'\{\n\s+"dir": ("[^"]+"),\n\s+"kind": ("[^"]+"),\n\s+"wire": ("[^"]+")\n\s+\}',
                  r'{"dir": \1, "kind": \2, "wire": \3}', text)
    return text + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    # `timeout` and Ctrl-C: unwind through the finally blocks so nothing is left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    ensure_tools()
    version = subprocess.run(["openvpn", "--version"], capture_output=True, text=True).stdout
    version = version.splitlines()[0] if version else "unknown"
    if " 2.6." not in version:
        log(f"warning: expected OpenVPN 2.6, have {version!r}")
    d = tempfile.mkdtemp(prefix="cf-kat-")
    sessions = []
    try:
        make_pki(d)
        shim = build_shim(d)
        ns_setup()
        for cipher, variant in (("AES-256-GCM", "ekm"), ("AES-128-GCM", "ekm"),
                                ("CHACHA20-POLY1305", "ekm"), ("AES-128-GCM", "prf"),
                                ("CHACHA20-POLY1305", "v1")):
            log(f"session {cipher} {variant}")
            _, logs, ekm_logs, pcap = run_session(d, shim, cipher, variant)
            sessions.append(build_session(cipher, variant, logs, ekm_logs, pcap))
    finally:
        ns_cleanup()
        if args.keep:
            log(f"work directory kept: {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    kat = {
        "generator": "crypto/scripts/gen_openvpn_fixtures.py",
        "openvpn": version,
        "note": "Data packets captured between two stock OpenVPN processes (server and "
                "client, --disable-dco, keepalive 1 10, tls-crypt), with the key material they "
                "used. Packet kinds: icmp = IPv4 ICMP echo, ping = keepalive.",
        "sessions": sessions,
    }
    with open(os.path.join(args.out, "openvpn_kat.json"), "w") as f:
        f.write(dump(kat))
    with open(os.path.join(args.out, "tls1_prf_kat.json"), "w") as f:
        f.write(dump(synthetic_prf_vector()))
    log(f"wrote {args.out}/openvpn_kat.json and tls1_prf_kat.json")


if __name__ == "__main__":
    main()
