#!/usr/bin/env bash
# bench-store.sh: what one `bes ingest` of one invocation (testdata's
# test_mixed.bep, 106 events) costs as the store grows, for this bes (the
# SQLite catalog) and an older one (the index.ndjson rewritten whole on
# every write), side by side in one run. BENCHMARKS.md (issue 12) holds its
# results. hyperfine from Debian (apt-get install -y hyperfine sqlite3).
#
#   testdata/bench-store.sh                    # old bes built from OLD=e395bad
#   OLD_BES=/tmp/bes-old RUNS=5 testdata/bench-store.sh
#
# Stores: a new directory; 20,000 streams (a generated BES capture of
# 20,000 invocations, ingested by each bes); 100,000 and 1,000,000 streams,
# simulated: the 20,000-stream store with 80,000 (980,000) more catalog
# rows (index lines for the old bes) whose stream files do not exist, which
# an ingest of another stream never opens. Each timed run ingests into a
# fresh copy of the store, synced to disk (hyperfine --prepare, not timed:
# without the sync, the copy's writeback slows the fsyncs of the run).
set -euo pipefail

RUNS=${RUNS:-10}
OLD=${OLD:-e395bad}
KEEP=${KEEP:-0}
WORK=${WORK:-$(mktemp -d /tmp/bes-store-bench.XXXXXX)}
cd "$(dirname "$0")/.."
ROOT=$PWD

for tool in hyperfine sqlite3 go git; do
	command -v "$tool" >/dev/null || { echo "bench-store.sh: $tool is missing (apt-get install -y hyperfine sqlite3)" >&2; exit 1; }
done
if [ "$KEEP" != 1 ]; then trap 'rm -rf "$WORK"; git -C "$ROOT" worktree remove --force "$WORK/old-src" 2>/dev/null || true' EXIT; fi

go build -o "$WORK/bes" .
go build -o "$WORK/bepgen" ./bepfile/bepgen/cmd/bepgen
if [ -z "${OLD_BES:-}" ]; then
	git worktree add --detach "$WORK/old-src" "$OLD" >/dev/null
	(cd "$WORK/old-src" && go build -o "$WORK/bes-old" .)
	OLD_BES=$WORK/bes-old
fi
NEW_BES=$WORK/bes
IN=$ROOT/testdata/test_mixed.bep

# Two captures of 10,000 invocations: the old bes holds one open file per
# stream of a file it ingests, so a capture of 20,000 would need a limit on
# open files over 20,000 (the new one works under 256).
for seed in 2 3; do
	mkdir -p "$WORK/gen$seed"
	"$WORK/bepgen" -size 0 -streams 10000 -min-targets 1 -max-targets 4 -seed $seed -out "$WORK/gen$seed" >/dev/null
done
for v in old new; do
	bin=$NEW_BES; [ $v = old ] && bin=$OLD_BES
	mkdir -p "$WORK/$v-empty"
	rm -rf "$WORK/$v-20k"
	/usr/bin/time -f "$v: ingest of two captures of 10,000 streams (ulimit -n $(ulimit -n)): %e s, %M KB" \
		"$bin" ingest --store "$WORK/$v-20k" --format ndjson "$WORK/gen2/capture.obe" "$WORK/gen3/capture.obe" >/dev/null
done

# 80,000 (980,000) more rows: keys sim-NNNNNNN.3.sim-NNNNNNN sort after the
# generated ones (hex UUIDs), so the old index stays in key order.
simulate() { # simulate DIR-FROM DIR-TO N
	cp -a "$WORK/old-$1" "$WORK/old-$2"
	awk -v n="$3" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"key\":\"sim-%07d.3.sim-%07d\",\"build_id\":\"sim-%07d\",\"invocation_id\":\"sim-%07d\",\"component\":3,\"events\":100,\"complete\":true,\"command\":\"test\",\"result\":\"SUCCESS\",\"has_exit_code\":true,\"file\":\"%032x.bess\",\"size\":10000,\"digest\":\"%064x\",\"source\":\"sim\",\"format\":\"obe\"}\n", i, i, i, i, i, i }' >>"$WORK/old-$2/index.ndjson"
	cp -a "$WORK/new-$1" "$WORK/new-$2"
	sqlite3 "$WORK/new-$2/catalog.db" "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < $3)
		INSERT INTO streams(key, build_id, invocation_id, component, events, complete, command, result, exit_code, has_exit_code, file, size, digest, source, format)
		SELECT CAST(printf('sim-%07d.3.sim-%07d', i, i) AS BLOB), CAST(printf('sim-%07d', i) AS BLOB), CAST(printf('sim-%07d', i) AS BLOB),
		       3, 100, 1, 'test', 'SUCCESS', 0, 1, printf('%032x.bess', i), 10000, printf('%064x', i), 'sim', 'obe' FROM c;"
}
simulate 20k 100k 80000
simulate 20k 1m 980000
du -sh "$WORK"/old-* "$WORK"/new-* | sed "s|$WORK/||"

args=()
for n in empty 20k 100k 1m; do
	for v in old new; do
		bin=$NEW_BES; [ $v = old ] && bin=$OLD_BES
		args+=(--command-name "$v $n" --prepare "sh -c 'rm -rf $WORK/run && cp -a $WORK/$v-$n $WORK/run && sync'"
			"$bin ingest --store $WORK/run --format ndjson $IN")
	done
done
hyperfine -N --runs "$RUNS" --export-markdown "$WORK/results.md" "${args[@]}"
cat "$WORK/results.md"
