#!/usr/bin/env bash
# Regenerate control/tests/fixtures/wire/: the first control packets between two stock
# OpenVPN 2.6 processes (Debian package), once per wrap mode:
#   tls-auth  : tls-auth ta.key 0 (server) / 1 (client), auth SHA256
#   tls-crypt : tls-crypt tc.key
#   none      : no control-channel wrapping
# Each run: two network namespaces (cwcap-s, cwcap-c) joined by a veth pair (cwcs0/cwcc0),
# a throw-away EC PKI made with the openssl CLI, tcpdump on the server side. The UDP
# payloads of the first $COUNT control packets (data packets skipped) are written as
# `c2s <hex>` / `s2c <hex>` lines. The static key files used are stored next to them.
#
# Needs root. Usage: sudo control/tests/capture_wire_fixtures.sh [outdir]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/fixtures/wire}
COUNT=${COUNT:-24}
NS_S=cwcap-s
NS_C=cwcap-c
IF_S=cwcs0
IF_C=cwcc0
IP_S=10.231.77.1
IP_C=10.231.77.2
PORT=1194

if [[ $EUID -ne 0 ]]; then
    echo "capture_wire_fixtures.sh: needs root (network namespaces)" >&2
    exit 2
fi
missing=()
command -v openvpn >/dev/null || missing+=(openvpn)
command -v tcpdump >/dev/null || missing+=(tcpdump)
command -v openssl >/dev/null || missing+=(openssl)
command -v ip >/dev/null || missing+=(iproute2)
if ((${#missing[@]})); then
    apt-get update -qq && apt-get install -y --no-install-recommends "${missing[@]}"
fi
command -v python3 >/dev/null || { echo "python3 is needed to convert the capture" >&2; exit 2; }

WORK=$(mktemp -d /tmp/cwcap.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$NS_S" 2>/dev/null || true
    ip netns del "$NS_C" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$OUT"

# ---------------------------------------------------------------- PKI (EC P-256)
pki() {
    cd "$WORK"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout ca.key -out ca.crt -days 3650 -subj "/CN=cw-capture-ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null
    for who in server client; do
        local eku=serverAuth
        [[ $who == client ]] && eku=clientAuth
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$who.key" -out "$who.csr" -subj "/CN=$who" 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=DNS:%s\n' \
            "$eku" "$who" >"$who.ext"
        openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
            -out "$who.crt" -days 3650 -extfile "$who.ext" 2>/dev/null
    done
    cd - >/dev/null
}

# ---------------------------------------------------------------- namespaces
netns_up() {
    ip netns del "$NS_S" 2>/dev/null || true
    ip netns del "$NS_C" 2>/dev/null || true
    ip netns add "$NS_S"
    ip netns add "$NS_C"
    ip link add "$IF_S" netns "$NS_S" type veth peer name "$IF_C" netns "$NS_C"
    ip -n "$NS_S" addr add "$IP_S/24" dev "$IF_S"
    ip -n "$NS_C" addr add "$IP_C/24" dev "$IF_C"
    for ns in "$NS_S" "$NS_C"; do
        ip -n "$ns" link set lo up
    done
    ip -n "$NS_S" link set "$IF_S" up
    ip -n "$NS_C" link set "$IF_C" up
}

convert() { # pcap mode out
    python3 - "$1" "$2" "$3" "$IP_S" "$COUNT" <<'PY'
import struct, sys
pcap, mode, out, server_ip, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
data = open(pcap, 'rb').read()
magic = struct.unpack('<I', data[:4])[0]
endian = '<' if magic in (0xa1b2c3d4, 0xa1b23c4d) else '>'
linktype = struct.unpack(endian + 'I', data[20:24])[0]
off, lines = 24, []
sip = bytes(int(x) for x in server_ip.split('.'))
while off + 16 <= len(data) and len(lines) < count:
    _, _, caplen, _ = struct.unpack(endian + 'IIII', data[off:off + 16])
    frame = data[off + 16: off + 16 + caplen]
    off += 16 + caplen
    if linktype == 1:            # Ethernet
        if frame[12:14] != b'\x08\x00':
            continue
        ip = frame[14:]
    elif linktype == 113:        # Linux cooked (SLL)
        ip = frame[16:]
    elif linktype == 276:        # Linux cooked v2 (SLL2)
        ip = frame[20:]
    else:
        sys.exit(f'unsupported link type {linktype}')
    if ip[0] >> 4 != 4 or ip[9] != 17:
        continue
    ihl = (ip[0] & 15) * 4
    payload = ip[ihl + 8:]
    if not payload or (payload[0] >> 3) in (6, 9):   # data packets are not fixtures
        continue
    direction = 's2c' if ip[12:16] == sip else 'c2s'
    lines.append(f'{direction} {payload.hex()}')
with open(out, 'w') as f:
    f.write(f'# OpenVPN control packets, mode {mode}: UDP payloads in capture order.\n')
    f.write('# Regenerate with control/tests/capture_wire_fixtures.sh (stock openvpn, netns).\n')
    for l in lines:
        f.write(l + '\n')
print(f'{mode}: {len(lines)} control packets -> {out}')
if len(lines) < 12:
    sys.exit(f'{mode}: too few control packets captured')
PY
}

run_mode() { # mode
    local mode=$1 wrap_s="" wrap_c=""
    case $mode in
    tls-auth)
        wrap_s="tls-auth $WORK/ta.key 0
auth SHA256"
        wrap_c="tls-auth $WORK/ta.key 1
auth SHA256"
        ;;
    tls-crypt)
        wrap_s="tls-crypt $WORK/tc.key"
        wrap_c="tls-crypt $WORK/tc.key"
        ;;
    none) ;;
    esac
    cat >"$WORK/server.conf" <<EOF
local $IP_S
port $PORT
proto udp
dev cwcaps
dev-type tun
topology subnet
server 10.231.78.0 255.255.255.0
ca $WORK/ca.crt
cert $WORK/server.crt
key $WORK/server.key
dh none
keepalive 10 60
disable-dco
verb 3
$wrap_s
EOF
    cat >"$WORK/client.conf" <<EOF
client
dev cwcapc
dev-type tun
proto udp
remote $IP_S $PORT
nobind
ca $WORK/ca.crt
cert $WORK/client.crt
key $WORK/client.key
remote-cert-tls server
disable-dco
verb 3
$wrap_c
EOF
    netns_up
    local pcap="$WORK/$mode.pcap"
    ip netns exec "$NS_S" timeout 40 tcpdump -i "$IF_S" -U -n -s 0 -w "$pcap" "udp port $PORT" \
        >"$WORK/tcpdump.log" 2>&1 &
    PIDS+=($!)
    sleep 1
    ip netns exec "$NS_S" timeout 40 openvpn --config "$WORK/server.conf" >"$WORK/server-$mode.log" 2>&1 &
    PIDS+=($!)
    sleep 1
    ip netns exec "$NS_C" timeout 40 openvpn --config "$WORK/client.conf" >"$WORK/client-$mode.log" 2>&1 &
    PIDS+=($!)
    local ok=0
    for _ in $(seq 1 60); do
        if grep -q "Initialization Sequence Completed" "$WORK/client-$mode.log" 2>/dev/null; then
            ok=1
            break
        fi
        sleep 0.5
    done
    sleep 1
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    PIDS=()
    if [[ $ok != 1 ]]; then
        echo "$mode: handshake did not complete; logs:" >&2
        tail -20 "$WORK/server-$mode.log" "$WORK/client-$mode.log" >&2
        exit 1
    fi
    convert "$pcap" "$mode" "$OUT/$mode.hex"
    ip netns del "$NS_S"
    ip netns del "$NS_C"
}

pki
openvpn --genkey secret "$WORK/ta.key" >/dev/null
openvpn --genkey secret "$WORK/tc.key" >/dev/null
for mode in tls-auth tls-crypt none; do
    run_mode "$mode"
done
cp "$WORK/ta.key" "$OUT/tls-auth.key"
cp "$WORK/tc.key" "$OUT/tls-crypt.key"
openvpn --version | head -1 >"$OUT/VERSION"
echo "fixtures written to $OUT"
