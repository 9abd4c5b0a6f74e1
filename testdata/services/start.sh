#!/usr/bin/env bash
# start.sh: the services of the team store's tests (issue 14), on loopback:
# a PostgreSQL from Debian's package (initdb + pg_ctl in a directory of its
# own, as the postgres user when run as root) and an S3-compatible server,
# versitygw (github.com/versity/versitygw, built with go install at a pinned
# version) with its posix backend. It is idempotent: services it started
# before and that still run are reused. It prints, on standard output, the
# variables the tests read, as shell assignments:
#
#   eval "$(testdata/services/start.sh)"   # .ci/run does this
#   go test ./store/postgres
#   testdata/services/stop.sh
#
#   BES_TEST_POSTGRES=postgres://postgres@127.0.0.1:PORT/bes_test?sslmode=disable
#   BES_TEST_S3=s3://bes-test?endpoint=http://127.0.0.1:PORT&region=us-east-1&use_path_style=true
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (the S3 server's test root user;
#   S3 clients read credentials from the environment, never from the URL)
#
# Everything lives in BES_SERVICES_DIR (default /tmp/bes-services-UID):
# pg/ (the cluster), s3/ (the objects), bin/versitygw, *.log. Ports:
# BES_PG_PORT (54329), BES_S3_PORT (7079). Progress goes to standard error.
set -euo pipefail

DIR=${BES_SERVICES_DIR:-${TMPDIR:-/tmp}/bes-services-$(id -u)}
PG_PORT=${BES_PG_PORT:-54329}
S3_PORT=${BES_S3_PORT:-7079}
VERSITYGW=github.com/versity/versitygw/cmd/versitygw@v1.8.0
S3_BUCKET=bes-test
S3_ACCESS=bes-test-access
S3_SECRET=bes-test-secret-not-for-production

log() { echo "services: $*" >&2; }
die() { echo "services: $*" >&2; exit 1; }

mkdir -p "$DIR"
chmod 755 "$DIR"

# --- PostgreSQL ---
PGBIN=${BES_PG_BIN:-}
if [ -z "$PGBIN" ]; then
	PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
fi
[ -n "$PGBIN" ] && [ -x "$PGBIN/pg_ctl" ] || die "no PostgreSQL server (apt-get install postgresql; or set BES_PG_BIN)"

# as_pg runs a command as the owner of the cluster: postgres when we are
# root (initdb and postgres refuse to run as root), else ourselves.
if [ "$(id -u)" = 0 ]; then
	id postgres >/dev/null 2>&1 || die "no postgres user (Debian's postgresql package makes it)"
	as_pg() { runuser -u postgres -- "$@"; }
else
	as_pg() { "$@"; }
fi

PGDATA=$DIR/pg
if [ ! -f "$PGDATA/PG_VERSION" ]; then
	log "initdb $PGDATA"
	rm -rf "$PGDATA"
	mkdir -p "$PGDATA"
	[ "$(id -u)" = 0 ] && chown postgres: "$PGDATA"
	as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 ||
		{ cat "$DIR/initdb.log" >&2; die "initdb failed"; }
fi
if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
	log "PostgreSQL on 127.0.0.1:$PG_PORT"
	# Loopback only; the socket in the cluster's directory, not /run.
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PGDATA -c max_connections=200 -c fsync=on" start >&2 ||
		{ tail -n 20 "$PGDATA/server.log" >&2; die "PostgreSQL did not start"; }
fi
PSQL=("$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q -t -A)
if [ "$(as_pg "${PSQL[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'bes_test'")" != 1 ]; then
	as_pg "${PSQL[@]}" -d postgres -c "CREATE DATABASE bes_test" >&2
fi

# --- S3 (versitygw, posix backend) ---
GW=$DIR/bin/versitygw
if [ ! -x "$GW" ]; then
	log "go install $VERSITYGW"
	GOBIN=$DIR/bin go install "$VERSITYGW" >&2 || die "cannot build versitygw"
fi
mkdir -p "$DIR/s3/$S3_BUCKET"
s3_up() { curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null; }
if ! { [ -f "$DIR/versitygw.pid" ] && kill -0 "$(cat "$DIR/versitygw.pid")" 2>/dev/null; }; then
	log "versitygw on 127.0.0.1:$S3_PORT"
	ROOT_ACCESS_KEY_ID=$S3_ACCESS ROOT_SECRET_ACCESS_KEY=$S3_SECRET \
		nohup "$GW" --port "127.0.0.1:$S3_PORT" posix "$DIR/s3" >"$DIR/versitygw.log" 2>&1 </dev/null &
	echo $! >"$DIR/versitygw.pid"
	for _ in $(seq 100); do
		s3_up && break
		kill -0 "$(cat "$DIR/versitygw.pid")" 2>/dev/null || { cat "$DIR/versitygw.log" >&2; die "versitygw exited"; }
		sleep 0.1
	done
	s3_up || { cat "$DIR/versitygw.log" >&2; die "versitygw does not answer on 127.0.0.1:$S3_PORT"; }
fi

echo "export BES_TEST_POSTGRES='postgres://postgres@127.0.0.1:$PG_PORT/bes_test?sslmode=disable'"
echo "export BES_TEST_S3='s3://$S3_BUCKET?endpoint=http://127.0.0.1:$S3_PORT&region=us-east-1&use_path_style=true'"
echo "export AWS_ACCESS_KEY_ID='$S3_ACCESS' AWS_SECRET_ACCESS_KEY='$S3_SECRET'"
