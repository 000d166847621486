#!/bin/sh
# Makes a private CA and, signed by it, one certificate for the nodes
# (gilkeeper serve) and one for the clients (gilkeeper run --nodes,
# gk::connect): everything mutual TLS needs, in DIR. Each side trusts only
# certificates signed by ca.pem. Usage: make_certs.sh DIR [DAYS]
set -eu
dir=${1:?usage: make_certs.sh DIR [DAYS]}
days=${2:-825}
mkdir -p "$dir"
cd "$dir"
# The CA: its key never leaves the machine that signs.
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days "$days" \
  -subj "/CN=gilkeeper test CA" 2>/dev/null
for who in node client; do
  openssl req -newkey rsa:2048 -nodes -keyout "$who.key" -out "$who.csr" -subj "/CN=gilkeeper $who" 2>/dev/null
  openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$who.pem" -days "$days" \
    2>/dev/null
  rm -f "$who.csr"
done
chmod 600 ./*.key
echo "made $dir/ca.pem, node.pem + node.key, client.pem + client.key"
