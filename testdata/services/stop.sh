#!/usr/bin/env bash
# stop.sh: stops the services start.sh started (PostgreSQL, versitygw) and,
# with --clean, removes their directory (BES_SERVICES_DIR).
set -euo pipefail

DIR=${BES_SERVICES_DIR:-${TMPDIR:-/tmp}/bes-services-$(id -u)}
[ -d "$DIR" ] || exit 0

if [ -f "$DIR/versitygw.pid" ]; then
	kill "$(cat "$DIR/versitygw.pid")" 2>/dev/null || true
	rm -f "$DIR/versitygw.pid"
fi
PGBIN=${BES_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)}
if [ -f "$DIR/pg/PG_VERSION" ] && [ -n "$PGBIN" ]; then
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/pg" -m fast stop >/dev/null 2>&1 || true
	else
		"$PGBIN/pg_ctl" -D "$DIR/pg" -m fast stop >/dev/null 2>&1 || true
	fi
fi
if [ "${1:-}" = --clean ]; then
	rm -rf "$DIR"
fi
