#!/bin/sh
# bench-serve.sh: bes serve's peak RSS while it receives a capture of many
# streams (bes replay) and answers queries, for each bes binary given
# (issue 13; BENCHMARKS.md). The capture comes from bepgen, e.g. 1 GB:
#
#   go run ./bepfile/bepgen/cmd/bepgen -size 0 -streams 285 -min-targets 200 -max-targets 2000 -out /tmp/cap
#   go build -o /tmp/hostile ./testdata/hostile
#   testdata/bench-serve.sh /tmp/cap/capture.obe /tmp/hostile '^9c097e3e' bes-before bes-after
#
# The third argument is a pattern of one stream of the capture (its build
# id: bes streams capture.obe lists them), queried 40 times.
#
# One line per binary: peak RSS (VmHWM) after the replay, after the
# queries, and the replay's and queries' wall time. Loopback only.
set -eu
capture=$1 hostile=$2 one=$3
shift 3
for bes in "$@"; do
	dir=$(mktemp -d)
	"$bes" serve --listen 127.0.0.1:0 --store "$dir/store" 2>"$dir/log" &
	pid=$!
	addr=
	while [ -z "$addr" ]; do
		sleep 0.2
		addr=$(sed -n 's/.*serving on \([^ ]*\) .*/\1/p' "$dir/log")
	done
	t0=$(date +%s)
	"$bes" replay "$capture" --to "grpc://$addr" >/dev/null
	t1=$(date +%s)
	hwm_replay=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
	# Everything (refused over 4 MiB by the new server; answered whole,
	# and refused by the client, by the old one), then one stream at a
	# time, four queries at once.
	"$hostile" -addr "$addr" -queries 8 -par 4 -pattern '.*' >/dev/null
	"$hostile" -addr "$addr" -queries 40 -par 4 -pattern "$one" >/dev/null
	t2=$(date +%s)
	hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
	kill -INT $pid
	wait $pid || true
	echo "$bes: peak RSS $((hwm_replay / 1024)) MB after the replay ($((t1 - t0)) s), $((hwm / 1024)) MB after the queries ($((t2 - t1)) s)"
	rm -rf "$dir"
done
