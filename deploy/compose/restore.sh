#!/bin/sh
# Restore a dump made by backup.sh: the schemas in the dump are dropped and recreated
# with their data, in one transaction (all or nothing). Stop the services first.
# docs/operations.md, "Backups and point-in-time recovery".
#
#   deploy/compose/restore.sh FILE
#
# BACKUP_RUNNER and PG_BIN as for backup.sh.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 FILE" >&2; exit 2; }
in=$1
[ -s "$in" ] || { echo "$in: no such dump" >&2; exit 2; }
case "${BACKUP_RUNNER:-compose}" in
  compose)
    docker compose exec -T postgres pg_restore --clean --if-exists --no-owner --single-transaction \
      --exit-on-error --username="${POSTGRES_USER:-stocksync}" --dbname="${POSTGRES_DB:-stocksync}" < "$in" ;;
  local)
    "${PG_BIN:+$PG_BIN/}pg_restore" --clean --if-exists --no-owner --single-transaction \
      --exit-on-error --dbname="${PGDATABASE:?set PGDATABASE}" "$in" ;;
  *) echo "BACKUP_RUNNER must be compose or local" >&2; exit 2 ;;
esac
echo "restored from $in"
