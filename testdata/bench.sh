#!/usr/bin/env bash
# bench.sh: times the bes binary on a large generated Bazel build against
# jq (answering the same questions on the JSON twin) and against the naive
# baseline (besnaive: a full protobuf-go decode of every event), in one
# run on one machine, and reports peak memory. BENCHMARKS.md holds its
# results. Public tools only: hyperfine and jq from Debian
# (apt-get install -y hyperfine jq), GNU time for peak RSS.
#
#   testdata/bench.sh                # 210MB file (100k+ targets), 10000 streams
#   SIZE=50MB STREAMS=1000 RUNS=3 testdata/bench.sh
#
# Everything generated goes to $WORK (a new temporary directory unless
# set), which is removed at the end unless KEEP=1. About 1 GB of disk for
# the default sizes.
set -euo pipefail

SIZE=${SIZE:-210MB}
STREAMS=${STREAMS:-10000}
RUNS=${RUNS:-5}
KEEP=${KEEP:-0}
WORK=${WORK:-$(mktemp -d /tmp/bes-bench.XXXXXX)}
cd "$(dirname "$0")/.."

for tool in hyperfine jq /usr/bin/time go; do
	command -v "$tool" >/dev/null || { echo "bench.sh: $tool is missing (apt-get install -y hyperfine jq time)" >&2; exit 1; }
done
if [ "$KEEP" != 1 ]; then trap 'rm -rf "$WORK"' EXIT; fi

echo "## Machine"
echo
echo "- CPU: $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "- memory: $(free -g | awk '/^Mem:/ {print $2}') GiB; disk: $(df -h "$WORK" | awk 'NR==2 {print $2}') ($WORK)"
echo "- $(go version); $(hyperfine --version); jq $(jq --version)"
echo

go build -o "$WORK/bes" .
go build -o "$WORK/besnaive" ./bepfile/bepgen/cmd/besnaive
go build -o "$WORK/bepgen" ./bepfile/bepgen/cmd/bepgen
BES=$WORK/bes NAIVE=$WORK/besnaive

echo "## Inputs"
echo
echo '```'
"$WORK/bepgen" -size "$SIZE" -seed 1 -json -out "$WORK"
"$WORK/bepgen" -size 0 -streams "$STREAMS" -min-targets 1 -max-targets 4 -seed 2 -out "$WORK"
echo '```'
BEP=$WORK/gen.bep JSON=$WORK/gen.json
BEP_BYTES=$(stat -c %s "$BEP")

# The questions, three ways. jq reads the JSON twin; bes and besnaive the
# binary file.
JQ_TESTS='select(.testSummary.overallStatus == "FAILED") | [.id.testSummary.label, .testSummary.overallStatus, .testSummary.totalRunCount]'
JQ_FAILURES='select((.aborted and ((.aborted.reason // "UNKNOWN") | IN("SKIPPED", "NO_BUILD", "NO_ANALYZE") | not))
  or (.action and .action.success != true) or (.completed and .completed.success != true)
  or ((.testSummary.overallStatus // "PASSED") | IN("PASSED", "FLAKY", "NO_STATUS") | not)
  or ((.finished.exitCode.code // 0) != 0))
  | [(.id | to_entries[0].value.label // ""), (keys_unsorted - ["id", "children"])[0]]'
JQ_SUMMARY='reduce inputs as $e ({configured: 0, built: 0, failed: 0, tests: {}};
  if $e.started then .command = $e.started.command else . end
  | if $e.configured then .configured += 1 else . end
  | if $e.completed then (if $e.completed.success then .built += 1 else .failed += 1 end) else . end
  | if $e.testSummary then .tests[$e.testSummary.overallStatus] += 1 else . end
  | if $e.finished then .exit = $e.finished.exitCode else . end)'

hf() { # name, then hyperfine arguments
	local name=$1
	shift
	hyperfine -N -i --warmup 1 --runs "$RUNS" --style basic --export-json "$WORK/$name.json" "$@" >&2
	jq -r '.results[] | "| `\(.command | gsub("'"$WORK"'/"; "") | gsub("\\s+"; " ") | gsub("[|]"; "\\|") | if length > 90 then .[:87] + "..." else . end)` | \(.mean * 1000 | round) ms | ± \(.stddev * 1000 | round) ms | \(.min * 1000 | round) ms |"' "$WORK/$name.json"
}
rss() { # prints peak RSS in MB of a command
	/usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.0f", $1 / 1024}'
}
ratio() { # name, slow command index, fast command index
	jq -r --argjson s "$2" --argjson f "$3" '.results[$s].mean / .results[$f].mean | . * 10 | round / 10' "$WORK/$1.json"
}

echo
echo "## Times (hyperfine, $RUNS runs after a warm-up; mean, stddev, min)"
echo
echo "| command | mean | stddev | min |"
echo "|---|---|---|---|"
hf tests "$BES tests --status failed $BEP" "$NAIVE tests $BEP" "jq -c '$JQ_TESTS' $JSON"
hf failures "$BES failures $BEP" "$NAIVE failures $BEP" "jq -c '$JQ_FAILURES' $JSON"
hf summary "$BES summary $BEP" "$NAIVE summary $BEP" "jq -n '$JQ_SUMMARY' $JSON"
hf ndjson "$BES dump --format ndjson $BEP" "$NAIVE ndjson $BEP"
hf ingest --prepare "rm -rf $WORK/store $WORK/naive.obe" "$BES ingest --store $WORK/store $BEP" "$NAIVE ingest $BEP $WORK/naive.obe"
rm -f "$WORK/naive.obe"
"$BES" ingest --store "$WORK/store10k" "$WORK/capture.obe" >/dev/null
rm -f "$WORK/capture.obe"
STREAM_KEY=$(jq -r 'select(.key) | .key' "$WORK/store10k/index.ndjson" | sed -n '5000p')
hf streams "$BES streams --store $WORK/store10k --match ^${STREAM_KEY:0:6}" "$BES streams --store $WORK/store10k --match ."
# The baseline of --match, replaying (and decoding) every stored stream,
# is measured by the Go benchmark on a store of the same kind.
BES_BENCH_SIZE=1MB BES_BENCH_STREAMS=$STREAMS go test ./commands -run '^$' -bench StreamsMatch -benchtime 5x >"$WORK/streams-go.txt"

echo
echo "## Ratios (same run)"
echo
echo "| question | bes vs jq | bes vs naive |"
echo "|---|---|---|"
for q in tests failures summary; do
	echo "| $q | $(ratio $q 2 0)× | $(ratio $q 1 0)× |"
done
echo "| dump --format ndjson | – | $(ratio ndjson 1 0)× |"
echo "| ingest | – | $(ratio ingest 1 0)× |"
awk '/StreamsMatch\/bes/ {b = $3} /StreamsMatch\/replay/ {r = $3} END {printf "| streams --match (%s streams, Go benchmark) | – | %.0f× vs replaying every stream (%.1f ms vs %.0f ms) |\n", "'"$STREAMS"'", r / b, b / 1e6, r / 1e6}' "$WORK/streams-go.txt"

# bes serve against a gRPC server that only acknowledges: 16 concurrent
# streams, every event persisted (store/server/bench_test.go).
go test ./store/server -run '^$' -bench Serve16 -benchtime 5x -count 3 >"$WORK/serve-go.txt"
awk '/Serve16\/ackonly/ {a += $7; na++} /Serve16\/bes/ {b += $7; nb++} END {printf "| bes serve, 16 concurrent streams (Go benchmark, mean of 3 runs) | – | %.2f× the events/s of an ack-only server (%.0f vs %.0f events/s) |\n", (b / nb) / (a / na), b / nb, a / na}' "$WORK/serve-go.txt"

rm -rf "$WORK/store"
STORE_BYTES=$(RSS_INGEST=$(rss "$BES" ingest --store "$WORK/store" "$BEP"); echo "$RSS_INGEST" > "$WORK/rss_ingest"; du -sb "$WORK/store" | cut -f1)
echo
echo "## Memory and disk"
echo
echo "| what | figure |"
echo "|---|---|"
echo "| input (binary file) | $((BEP_BYTES / 1000000)) MB |"
echo "| bes ingest peak RSS | $(cat "$WORK/rss_ingest") MB ($(awk -v r="$(cat "$WORK/rss_ingest")" -v b="$BEP_BYTES" 'BEGIN {printf "%.2f", r * 1048576 / b}')× the input) |"
echo "| store on disk | $STORE_BYTES bytes ($(awk -v s="$STORE_BYTES" -v b="$BEP_BYTES" 'BEGIN {printf "%.4f", s / b}')× the input) |"
for c in "tests --status failed" failures summary "dump --format ndjson"; do
	# shellcheck disable=SC2086
	echo "| bes $c peak RSS | $(rss "$BES" $c "$BEP") MB |"
done
echo "| besnaive tests peak RSS | $(rss "$NAIVE" tests "$BEP") MB |"
echo "| jq (failing tests) peak RSS | $(rss jq -c "$JQ_TESTS" "$JSON") MB |"
echo "| bes streams --match (store of $STREAMS streams, $(du -sm "$WORK/store10k" | cut -f1) MB) peak RSS | $(rss "$BES" streams --store "$WORK/store10k" --match .) MB |"

# Stored streams read back as the exact OrderedBuildEvents.
"$BES" dump --store "$WORK/store" --format obe "$(jq -r 'select(.key) | .key' "$WORK/store/index.ndjson")" >"$WORK/back.obe"
"$BES" dump --format obe "$BEP" | cmp - "$WORK/back.obe" && echo && echo "Round trip: the stored stream reads back byte for byte as the OrderedBuildEvents of the file."
