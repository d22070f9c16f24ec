#!/usr/bin/env bash
# Entrypoint of the "replica" service (docker-compose.yml). On first start, with an
# empty data directory, it clones the primary with pg_basebackup -R, which also writes
# standby.signal and primary_conninfo (with the slot "replica_slot" that
# docker/primary-init.sh created), so Postgres starts as a streaming hot standby.
# Later starts find the data directory filled and go straight to Postgres.
#
# It then hands over to the postgres image's own entrypoint, which drops root, sees
# an existing cluster (so runs no initdb and no init scripts) and starts the server.
set -euo pipefail

: "${PGDATA:?PGDATA must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"
PRIMARY_HOST="${PRIMARY_HOST:-primary}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"

    # depends_on already waits for the primary's healthcheck; this covers a primary
    # that is restarting at the moment the replica comes up.
    until pg_isready --quiet --host "$PRIMARY_HOST" --port 5432; do
        echo "replica: waiting for $PRIMARY_HOST:5432"
        sleep 1
    done

    echo "replica: cloning $PRIMARY_HOST with pg_basebackup"
    # The password goes through the environment, not the command line; -R writes the
    # connection string it used (password included) into postgresql.auto.conf.
    gosu postgres env PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup \
        --dbname "host=$PRIMARY_HOST port=5432 user=replicator application_name=replica" \
        --pgdata "$PGDATA" --slot replica_slot --write-recovery-conf \
        --wal-method stream --checkpoint fast --progress
fi

exec docker-entrypoint.sh "$@"
