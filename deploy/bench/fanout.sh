#!/usr/bin/env bash
# fanout.sh: one publisher, K pullers (default 2) pulling the same 1 GiB
# version at once, as subscribers do when an advert reaches them: prints
# the wall time until every pull is done, the publisher's CPU seconds
# during the pulls and the pullers' in all (docs/benchmarks.md, "A map of
# recent chunk locations"). Real daemons on loopback, default
# configuration.
#
#	NII_BIN=/tmp/nii deploy/bench/fanout.sh [K]
#
# Environment: NII_BIN (required), NII_BENCH_DIR (default /tmp/nii-fanout).
set -euo pipefail
nii=${NII_BIN:?set NII_BIN to the nii binary}
k=${1:-2}
dir=${NII_BENCH_DIR:-/tmp/nii-fanout}
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
field() { awk -v k="\"$2\":" '$1 == k { v = $2; gsub(/[",]/, "", v); print v; exit }' <<<"$1"; }
cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14+$15)/t }' "/proc/$1/stat"; }
until_ok() { local end=$((SECONDS + 60)); until "$@" >/dev/null 2>&1; do ((SECONDS < end)) || exit 1; sleep 0.1; done; }

rm -rf "$dir"/pub "$dir"/pull*
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
pullers=()
for ((i = 0; i < k; i++)); do
	"$nii" --home "$dir/pull$i" init --org "benchpull$i" --api 127.0.0.1:0 >/dev/null
	"$nii" --home "$dir/pull$i" run --gossip 127.0.0.1:0 "${p2p[@]}" --join "$seed" >"$dir/pull$i.log" 2>&1 &
	pullers+=($!)
	pids+=($!)
done
for ((i = 0; i < k; i++)); do until_ok "$nii" --home "$dir/pull$i" show benchpub/big; done
pub0=$(cpu "$pub")
start=$(date +%s.%N)
cl=()
for ((i = 0; i < k; i++)); do
	"$nii" --home "$dir/pull$i" pull benchpub/big -q >/dev/null &
	cl+=($!)
done
for p in "${cl[@]}"; do wait "$p"; done
end=$(date +%s.%N)
pc=0
for p in "${pullers[@]}"; do pc=$(awk -v a="$pc" -v b="$(cpu "$p")" 'BEGIN { printf "%.2f", a + b }'); done
echo "fanout $k: all pulls $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }') s, publisher cpu $(awk -v a="$pub0" -v b="$(cpu "$pub")" 'BEGIN { printf "%.2f", b - a }') s (during the pulls), pullers cpu $pc s"
