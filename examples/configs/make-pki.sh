#!/usr/bin/env bash
# A small PKI for server.conf/client.conf, made with openssl the way easy-rsa does: a CA
# (keyCertSign, cRLSign), a server certificate (EKU serverAuth), client certificates (EKU
# clientAuth, one CN each), an empty CRL and the tls-crypt/tls-auth static key.
#   ./make-pki.sh [DIR] [CLIENT_CN ...]     (default: pki client1)
# Set ALGO=ec for ECDSA P-256 instead of RSA 2048.
set -euo pipefail
dir=${1:-pki}; shift || true
clients=("${@:-client1}")
[ ${#clients[@]} -eq 0 ] && clients=(client1)
mkdir -p "$dir/certs"
cd "$dir"
touch index.txt
[ -f serial ] || openssl rand -hex 16 | tr a-f A-F | sed 's/^./1/' > serial
[ -f crlnumber ] || echo 01 > crlnumber
cat > openssl.cnf <<CNF
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = .
database = \$dir/index.txt
new_certs_dir = \$dir/certs
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = \$dir/ca.crt
private_key = \$dir/ca.key
default_md = sha256
default_days = 825
default_crl_days = 180
unique_subject = no
policy = policy_anything
[ policy_anything ]
commonName = supplied
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused
[ ca_ext ]
basicConstraints = critical,CA:true
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer:always
keyUsage = critical,cRLSign,keyCertSign
[ server_ext ]
basicConstraints = CA:FALSE
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer:always
extendedKeyUsage = serverAuth
keyUsage = digitalSignature,keyEncipherment
[ client_ext ]
basicConstraints = CA:FALSE
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer:always
extendedKeyUsage = clientAuth
keyUsage = digitalSignature
CNF
genkey() {
  if [ "${ALGO:-rsa}" = ec ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
  else
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"
  fi
  chmod 600 "$1"
}
issue() { # CN EXTENSIONS
  [ -f "$1.crt" ] && return
  genkey "$1.key"
  openssl req -new -batch -config openssl.cnf -key "$1.key" -out "$1.csr" -subj "/CN=$1"
  openssl ca -batch -notext -config openssl.cnf -extensions "$2" -in "$1.csr" -out "$1.crt"
}
if [ ! -f ca.crt ]; then
  genkey ca.key
  openssl req -new -x509 -batch -config openssl.cnf -extensions ca_ext -key ca.key -out ca.crt -days 3650 -subj "/CN=dco CA"
fi
issue server server_ext
for cn in "${clients[@]}"; do issue "$cn" client_ext; done
openssl ca -batch -config openssl.cnf -gencrl -out crl.pem
[ -f ta.key ] || openvpn --genkey secret ta.key
echo "PKI in $(pwd): ca.crt server.{crt,key} ${clients[*]/%/.crt} crl.pem ta.key"
