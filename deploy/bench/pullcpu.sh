#!/usr/bin/env bash
# pullcpu.sh: one 'nii pull' of a 1 GiB file between two real daemons on
# loopback, printing its wall time, the puller's CPU seconds over its
# whole life and the publisher's during the pull; with PERF=1, the pull
# runs under 'perf record -a -g' into $DIR/perf.data (docs/benchmarks.md,
# "Where a pull's CPU goes").
#
#	NII_BIN=/tmp/nii deploy/bench/pullcpu.sh
#
# Environment: NII_BIN (required), NII_BENCH_DIR (default /tmp/nii-pullcpu),
# PERF (1: profile the pull), NII_BENCH_INFLIGHT (the puller's [p2p]
# in_flight, e.g. 64MiB).
set -euo pipefail
nii=${NII_BIN:?set NII_BIN to the nii binary}
dir=${NII_BENCH_DIR:-/tmp/nii-pullcpu}
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
field() { awk -v k="\"$2\":" '$1 == k { v = $2; gsub(/[",]/, "", v); print v; exit }' <<<"$1"; }
cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14+$15)/t }' "/proc/$1/stat"; }
until_ok() { local end=$((SECONDS + 60)); until "$@" >/dev/null 2>&1; do ((SECONDS < end)) || exit 1; sleep 0.1; done; }

rm -rf "$dir/pub" "$dir/pull"
mkdir -p "$dir"
[[ -f $dir/big.bin ]] || head -c $((1 << 30)) /dev/urandom >"$dir/big.bin"
cat "$dir/big.bin" >/dev/null
p2p=(--p2p /ip4/127.0.0.1/tcp/0 --p2p /ip4/127.0.0.1/udp/0/quic-v1)
"$nii" --home "$dir/pub" init --org benchpub --api 127.0.0.1:0 >/dev/null
"$nii" --home "$dir/pub" run --gossip 127.0.0.1:0 "${p2p[@]}" >"$dir/pub.log" 2>&1 &
pub=$!
pids+=("$pub")
until_ok "$nii" --home "$dir/pub" status --json
seed=$(field "$("$nii" --home "$dir/pub" status --json)" gossip)
"$nii" --home "$dir/pub" publish "$dir/big.bin" --name big --title big --licence OGL-UK-3.0 -q >/dev/null
"$nii" --home "$dir/pull" init --org benchpull --api 127.0.0.1:0 >/dev/null
if [[ -n ${NII_BENCH_INFLIGHT:-} ]]; then
	sed -i "s/^\[p2p\]\$/[p2p]\nin_flight = '$NII_BENCH_INFLIGHT'/" "$dir/pull/config.toml"
fi
"$nii" --home "$dir/pull" run --gossip 127.0.0.1:0 "${p2p[@]}" --join "$seed" >"$dir/pull.log" 2>&1 &
puller=$!
pids+=("$puller")
until_ok "$nii" --home "$dir/pull" show benchpub/big
wrap=()
[[ ${PERF:-} != 1 ]] || wrap=(perf record -a -g -o "$dir/perf.data" --)
pub0=$(cpu "$pub")
start=$(date +%s.%N)
"${wrap[@]}" "$nii" --home "$dir/pull" pull benchpub/big -q
end=$(date +%s.%N)
echo "pull $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }') s, puller cpu $(cpu "$puller") s, publisher cpu $(awk -v a="$pub0" -v b="$(cpu "$pub")" 'BEGIN { printf "%.2f", b - a }') s (during the pull)"
