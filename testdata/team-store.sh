#!/usr/bin/env bash
# team-store.sh: the team store end to end (issue 14), on the services of
# testdata/services/start.sh (PostgreSQL and versitygw on loopback).
#
#   1. two `bes serve` replicas on one store (a schema of the test database,
#      a prefix of the test bucket);
#   2. 40 streams (two generated BES captures of 20 invocations) replayed,
#      20 to each replica at once;
#   3. replica A SIGKILLed while one of its streams is half stored; its 20
#      streams sent again, whole, to replica B, which continues them;
#   4. 8 `bes ingest` processes at once, each its own stream and one they
#      all share;
#   5. every stream listed once, complete, and byte for byte what was sent
#      (bes dump --format obe from the store against the file);
#   6. bes store check finds the store consistent.
#
# Its last line gives the counts. .ci/run runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

services=$(testdata/services/start.sh)
eval "$services"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
WORK=$(mktemp -d /tmp/bes-team-store.XXXXXX)
ID=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
SCHEMA=team_$ID
PIDS=()
psql_() { "$PGBIN/psql" "$BES_TEST_POSTGRES" -X -q -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	psql_ -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "team-store: FAIL: $*" >&2; exit 1; }

go build -o "$WORK/bes" .
go build -o "$WORK/bepgen" ./bepfile/bepgen/cmd/bepgen
BES=$WORK/bes
for half in a b; do
	seed=$([ $half = a ] && echo 1401 || echo 1402)
	"$WORK/bepgen" -streams 20 -seed "$seed" -min-targets 150 -max-targets 400 -size 10KB -out "$WORK/$half" >/dev/null
done
keys() { "$BES" streams --format ndjson "$@" | grep -o '"key":"[^"]*"' | cut -d'"' -f4; }
keys "$WORK/a/capture.obe" >"$WORK/a.keys"
keys "$WORK/b/capture.obe" >"$WORK/b.keys"
[ "$(sort -u "$WORK/a.keys" "$WORK/b.keys" | wc -l)" = 40 ] || fail "the captures do not hold 40 distinct streams"

psql_ -c "CREATE SCHEMA $SCHEMA"
export BES_STORE="$BES_TEST_POSTGRES&search_path=$SCHEMA"
export BES_BLOBS="${BES_TEST_S3/\?//team-$ID?}"

# 1. Two replicas.
start_serve() { # NAME: starts a replica on a free port; sets PORT_NAME, PID_NAME
	"$BES" serve --listen 127.0.0.1:0 --idle-timeout 0 >"$WORK/serve-$1.log" 2>&1 &
	PIDS+=($!)
	printf -v "PID_$1" %s $!
	for _ in $(seq 100); do
		port=$(grep -o 'serving on 127.0.0.1:[0-9]*' "$WORK/serve-$1.log" | cut -d: -f2 || true)
		[ -n "$port" ] && break
		sleep 0.1
	done
	[ -n "$port" ] || { cat "$WORK/serve-$1.log" >&2; fail "replica $1 did not start"; }
	printf -v "PORT_$1" %s "$port"
}
start_serve A
start_serve B

# 2. 20 streams to each at once.
"$BES" replay "$WORK/a/capture.obe" --to "grpc://127.0.0.1:$PORT_A" --retries 1 >"$WORK/replay-a.txt" 2>&1 &
REPLAY_A=$!
PIDS+=($REPLAY_A)
"$BES" replay "$WORK/b/capture.obe" --to "grpc://127.0.0.1:$PORT_B" >"$WORK/replay-b.txt" 2>&1 &
REPLAY_B=$!
PIDS+=($REPLAY_B)

# 3. Replica A killed while one of its streams is stored in part: the
# replay to it is frozen (SIGSTOP) once a stream of A's is listed with
# events but not complete, so that the stream stays cut while A dies.
half_stored=""
for _ in $(seq 600); do
	kill -0 "$REPLAY_A" 2>/dev/null || break
	half_stored=$("$BES" streams --format ndjson 2>/dev/null | grep '"complete":false' | grep -v '"events":0,' | grep -o '"key":"[^"]*"' | cut -d'"' -f4 | grep -F -x -f "$WORK/a.keys" | head -n 1 || true)
	if [ -n "$half_stored" ]; then
		kill -STOP "$REPLAY_A"
		sleep 0.3 # what A received is stored
		"$BES" streams --format ndjson --match "$half_stored" | grep -q '"complete":false' && break
		kill -CONT "$REPLAY_A"
		half_stored=""
	fi
	sleep 0.02
done
[ -n "$half_stored" ] || fail "no stream of replica A was seen stored in part"
kill -KILL "$PID_A"
wait "$PID_A" 2>/dev/null || true
kill -KILL "$REPLAY_A"
wait "$REPLAY_A" 2>/dev/null || true
wait "$REPLAY_B" || { cat "$WORK/replay-b.txt" >&2; fail "the replay to replica B failed"; }
cut_at=$("$BES" streams --format ndjson --match "$half_stored" | grep -o '"events":[0-9]*' | cut -d: -f2)
partial=$("$BES" streams --format ndjson | grep '"complete":false' | grep -o '"key":"[^"]*"' | cut -d'"' -f4 | grep -c -F -x -f "$WORK/a.keys" || true)
[ "$partial" -ge 1 ] || fail "no stream of replica A was left in part by the kill"
echo "team-store: replica A killed with $partial of its streams stored in part ($half_stored at $cut_at events)" >&2

# ... and its streams sent again, whole, to replica B, which continues them.
"$BES" replay "$WORK/a/capture.obe" --to "grpc://127.0.0.1:$PORT_B" >"$WORK/replay-a2.txt" 2>&1 ||
	{ cat "$WORK/replay-a2.txt" >&2; fail "sending replica A's streams again to B failed"; }
grep -q 'continued by' "$WORK/serve-B.log" || fail "replica B continued no stream"

# 4. 8 bes ingest processes at once: each its own stream, and one they share.
ING=()
for i in $(seq 8); do
	"$BES" ingest --build-id "ingest-$i" testdata/test_mixed.bep testdata/build_ok.bep >"$WORK/ingest-$i.txt" 2>&1 &
	ING+=($!)
done
for p in "${ING[@]}"; do wait "$p" || fail "an ingest process failed: $(cat "$WORK"/ingest-*.txt)"; done
created=$(cat "$WORK"/ingest-*.txt | grep -c ' created$' || true)
unchanged=$(cat "$WORK"/ingest-*.txt | grep -c ' unchanged$' || true)
[ "$created" = 16 ] && [ "$unchanged" = 0 ] || fail "ingest: $created created, $unchanged unchanged; want 16 and 0 (own build ids)"
for i in $(seq 8); do "$BES" ingest testdata/build_keep_going_fail.bep >"$WORK/shared-$i.txt" 2>&1 & ING+=($!); done
for p in "${ING[@]:8}"; do wait "$p" || fail "a shared ingest failed"; done
[ "$(cat "$WORK"/shared-*.txt | grep -c ' created$')" = 1 ] || fail "the shared stream was created $(cat "$WORK"/shared-*.txt | grep -c ' created$') times"
[ "$(cat "$WORK"/shared-*.txt | grep -c ' unchanged$')" = 7 ] || fail "the shared stream was not unchanged 7 times"

# 5. Every stream listed once, complete, and byte for byte what was sent.
"$BES" streams --format ndjson >"$WORK/listed.ndjson"
listed=$(wc -l <"$WORK/listed.ndjson")
unique=$(grep -o '"key":"[^"]*"' "$WORK/listed.ndjson" | sort -u | wc -l)
incomplete=$(grep -c '"complete":false' "$WORK/listed.ndjson" || true)
want=$((40 + 16 + 1))
[ "$listed" = "$want" ] && [ "$unique" = "$want" ] || fail "$listed streams listed ($unique keys), want $want once each"
[ "$incomplete" = 0 ] || fail "$incomplete streams not complete"
same=0
for half in a b; do
	while read -r key; do
		"$BES" dump --format obe "$key" >"$WORK/got.obe"
		"$BES" dump --format obe "$key" "$WORK/$half/capture.obe" >"$WORK/want.obe"
		cmp -s "$WORK/got.obe" "$WORK/want.obe" || fail "stream $key differs from what was sent ($(wc -c <"$WORK/got.obe") vs $(wc -c <"$WORK/want.obe") bytes)"
		same=$((same + 1))
	done <"$WORK/$half.keys"
done
for i in $(seq 8); do
	for f in test_mixed build_ok; do
		key=$("$BES" streams --format ndjson --build-id "ingest-$i" "testdata/$f.bep" | grep -o '"key":"[^"]*"' | cut -d'"' -f4)
		"$BES" dump --format obe "$key" >"$WORK/got.obe"
		"$BES" dump --format obe --build-id "ingest-$i" "testdata/$f.bep" >"$WORK/want.obe"
		cmp -s "$WORK/got.obe" "$WORK/want.obe" || fail "ingested stream $key differs from its file"
		same=$((same + 1))
	done
done
key=$("$BES" streams --format ndjson testdata/build_keep_going_fail.bep | grep -o '"key":"[^"]*"' | cut -d'"' -f4)
"$BES" dump --format obe "$key" >"$WORK/got.obe"
"$BES" dump --format obe testdata/build_keep_going_fail.bep >"$WORK/want.obe"
cmp -s "$WORK/got.obe" "$WORK/want.obe" || fail "the shared ingested stream differs from its file"
same=$((same + 1))
events=$(grep -o '"events":[0-9]*' "$WORK/listed.ndjson" | cut -d: -f2 | awk '{n += $1} END {print n}')
# 6. bes store check on the team store: every row's blobs read back and
# agree with it (a blob replica A left unlisted is younger than the
# orphan grace: an upload in progress, not reported).
"$BES" store check >"$WORK/check.txt" 2>&1 || { cat "$WORK/check.txt" >&2; fail "bes store check"; }
grep -q ': consistent$' "$WORK/check.txt" || { cat "$WORK/check.txt" >&2; fail "bes store check says no consistent"; }
echo "team-store: ok: 2 replicas, 40 streams replayed, replica A killed mid-stream ($partial partial, continued by B), 8+8 concurrent ingests; $listed streams listed once, all complete, $same byte-identical to what was sent, $events events; bes store check: consistent"
