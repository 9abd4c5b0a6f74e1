#!/bin/sh
# Runs Bazel (Debian's bazel-bootstrap 4.2.3, or $BAZEL) on the genrule-only
# workspace ws/ beside this script, in a clean environment, streaming its
# build events to a Build Event Service. Used by commands/bazel_test.go; by
# hand:
#
#   bes serve --listen 127.0.0.1:8980 --store /tmp/bes-store &
#   testdata/bazel/run_bazel.sh build grpc://127.0.0.1:8980 /tmp/build.bep /tmp/bazel-scratch
#   testdata/bazel/run_bazel.sh shutdown /tmp/bazel-scratch
#
# `files` builds TARGETs writing only Bazel's own files, the binary and the
# JSON, no BES (commands/bazel_kill_test.go kills its server mid-build):
#
#   testdata/bazel/run_bazel.sh files /tmp/b.bep /tmp/b.json /tmp/bazel-scratch //gen:hello //gen:slow
#
# SCRATCH gets a copy of the workspace, the HOME and the output user root,
# so nothing outside it is written. `build` stops the Bazel server when it
# ends; `shutdown` stops one left running (the server also quits after 5
# idle minutes).
#
# The startup flags are those of the BEP corpus (bep-corpus/MANIFEST.md):
# no rc files, Debian's install base trusted as it is, a private output
# user root. Genrules need no downloaded repository, so no
# --override_repository stand-ins are needed offline.
set -eu
usage() { echo "usage: $0 build BACKEND BEP_FILE SCRATCH | files BEP_FILE JSON_FILE SCRATCH TARGET... | shutdown SCRATCH" >&2; exit 2; }
[ $# -ge 1 ] || usage
mode=$1; shift
case $mode in
build) [ $# -eq 3 ] || usage; backend=$1 bep=$2 scratch=$3 ;;
files) [ $# -ge 4 ] || usage; bep=$1 json=$2 scratch=$3; shift 3 ;;
shutdown) [ $# -eq 1 ] || usage; scratch=$1 ;;
*) usage ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
bazel=${BAZEL:-$(command -v bazel-4 || command -v bazel || true)}
[ -n "$bazel" ] || { echo "$0: no bazel-4 or bazel in PATH (apt-get install bazel-bootstrap)" >&2; exit 3; }
mkdir -p "$scratch/home" "$scratch/out"
startup="--nosystem_rc --nohome_rc --output_user_root=$scratch/out --max_idle_secs=300"
if [ -f /usr/share/bazel/install_base_key ]; then
	startup="$startup --install_base=/usr/share/bazel --trust_install_base"
fi
run() {
	# shellcheck disable=SC2086 # $startup is a list of flags
	env -i HOME="$scratch/home" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 USER=ci TERM=dumb \
		sh -c 'cd "$1" && shift && exec "$@"' sh "$scratch/ws" "$bazel" $startup "$@"
}
if [ "$mode" = shutdown ]; then
	[ -d "$scratch/ws" ] || exit 0
	run shutdown
	exit
fi
rm -rf "$scratch/ws"
cp -R "$here/ws" "$scratch/ws"
trap 'run shutdown || true' EXIT
if [ "$mode" = files ]; then
	run build --build_event_binary_file="$bep" --build_event_json_file="$json" "$@"
	exit
fi
run build --bes_backend="$backend" --bes_lifecycle_events --bes_timeout=60s \
	--project_id=bes-test --build_event_binary_file="$bep" //...
