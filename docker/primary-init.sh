#!/usr/bin/env bash
# Runs once, when the postgres image initialises the primary's empty data directory
# (mounted into /docker-entrypoint-initdb.d by docker-compose.yml). Creates:
#   - role "replicator" (REPLICATION) and the physical slot "replica_slot", which the
#     replica's pg_basebackup and streaming use (docker/replica-entrypoint.sh);
#   - role "app" and database "app", which clients reach through pgweir;
#   - a pg_hba.conf line letting "replicator" connect for replication over the network
#     (the image's own catch-all "host all all all" line does not cover replication).
# Passwords come from the container's environment (set in docker-compose.yml).
set -euo pipefail

: "${APP_PASSWORD:?APP_PASSWORD must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"

# psql's :'name' quotes the values as literals, so a password may contain anything.
psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_password="$APP_PASSWORD" -v replication_password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH LOGIN REPLICATION PASSWORD :'replication_password';
SELECT pg_create_physical_replication_slot('replica_slot');
CREATE ROLE app WITH LOGIN PASSWORD :'app_password';
CREATE DATABASE app OWNER app;
SQL

echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
