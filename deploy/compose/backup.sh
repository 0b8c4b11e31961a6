#!/bin/sh
# Back up the whole Stocksync database (every service's schema) to one custom-format
# pg_dump file. docs/operations.md, "Backups and point-in-time recovery".
#
#   deploy/compose/backup.sh FILE
#
# By default pg_dump runs inside the compose `postgres` container (no client on the
# host). BACKUP_RUNNER=local runs the pg_dump on PATH (or in PG_BIN) with the usual
# libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE): its major version
# must be at least the server's.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 FILE" >&2; exit 2; }
out=$1
tmp="$out.partial"
trap 'rm -f "$tmp"' EXIT
case "${BACKUP_RUNNER:-compose}" in
  compose)
    docker compose exec -T postgres pg_dump --format=custom --no-owner \
      --username="${POSTGRES_USER:-stocksync}" --dbname="${POSTGRES_DB:-stocksync}" > "$tmp" ;;
  local)
    "${PG_BIN:+$PG_BIN/}pg_dump" --format=custom --no-owner --file="$tmp" ;;
  *) echo "BACKUP_RUNNER must be compose or local" >&2; exit 2 ;;
esac
# Written whole or not at all: a failed dump never leaves a truncated FILE behind.
mv "$tmp" "$out"
trap - EXIT
echo "backed up to $out"
