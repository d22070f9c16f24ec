#!/usr/bin/env bash
# Writes the files the example overlay's secretGenerator reads, in secrets/ beside this
# script (ignored by git): passwords.env (PGWEIR_ORDERS_PASSWORD, the Postgres role
# "orders"'s password, taken from the environment), userlist.txt (pgweir's admin console
# users "admin" and "monitor", with new random passwords) and a self-signed TLS
# certificate and key for the Service's names. Needs openssl. Refuses to overwrite.
#
#   PGWEIR_ORDERS_PASSWORD=... deploy/kubernetes/overlays/example/make-secrets.sh
set -euo pipefail
cd "$(dirname "$0")"

: "${PGWEIR_ORDERS_PASSWORD:?set PGWEIR_ORDERS_PASSWORD to the password of the Postgres role orders}"
NAMESPACE=orders     # kustomization.yaml's namespace
SERVICE=pgweir

if [ -e secrets ]; then
    echo "secrets/ exists; remove it to make new secrets" >&2
    exit 1
fi
umask 077
mkdir secrets

printf 'PGWEIR_ORDERS_PASSWORD=%s\n' "$PGWEIR_ORDERS_PASSWORD" > secrets/passwords.env

# Plaintext passwords; SCRAM verifiers ("SCRAM-SHA-256$...") work as well.
{
    echo "\"admin\" \"$(openssl rand -hex 16)\""
    echo "\"monitor\" \"$(openssl rand -hex 16)\""
} > secrets/userlist.txt

# Self-signed, for clients with sslmode=require; use a certificate of your CA (cert-manager)
# for clients that verify it.
names="DNS:$SERVICE,DNS:$SERVICE.$NAMESPACE,DNS:$SERVICE.$NAMESPACE.svc"
names="$names,DNS:$SERVICE.$NAMESPACE.svc.cluster.local"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
    -subj "/CN=$SERVICE.$NAMESPACE.svc" -addext "subjectAltName=$names" \
    -keyout secrets/tls.key -out secrets/tls.crt 2>/dev/null

echo "wrote $(pwd)/secrets: passwords.env, userlist.txt (the admin console's passwords), tls.crt, tls.key"
