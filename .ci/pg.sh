#!/usr/bin/env bash
# Throwaway PostgreSQL on 127.0.0.1 for the tests.
#   .ci/pg.sh start [DIR] [PORT]   prints the database URL
#   .ci/pg.sh stop [DIR]
set -euo pipefail
CMD=${1:-start}; DIR=${2:-/tmp/spendgauge-pg}; PORT=${3:-55432}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case $CMD in
start)
  if [ -f "$DIR/data/postmaster.pid" ]; then as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null || true; fi
  rm -rf "$DIR"; mkdir -p "$DIR"; [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
  as_pg "$BIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
  as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w -t 30 \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null
  as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres spendgauge_test
  echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/spendgauge_test" ;;
stop)
  as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null && rm -rf "$DIR" ;;
*) echo "usage: $0 start|stop [DIR] [PORT]" >&2; exit 2 ;;
esac
