#!/usr/bin/env bash
# pullcpu.sh: one 'nii pull' of a 1 GiB file between two real daemons on
# loopback, printing its wall time, the puller's CPU seconds over its
# whole life and the publisher's during the pull; with PERF=1, the pull
# runs under 'perf record -a -g' into $DIR/perf.data (docs/benchmarks.md,
# "Where a pull's CPU goes").
#
# With K > 1, K pullers pull the same version at once, as a federation's
# subscribers do when an advert reaches them, and it prints the wall time
# until every pull is done, the publisher's CPU during the pulls and the
# pullers' in all ("A map of recent chunk locations").
#
#	NII_BIN=/tmp/nii deploy/bench/pullcpu.sh [K]
#
# Environment: NII_BIN (required), NII_BENCH_DIR (default /tmp/nii-pullcpu),
# PERF (1: profile the pull, one puller only), NII_BENCH_INFLIGHT (the
# pullers' [p2p] in_flight, e.g. 64MiB), NII_BENCH_NETNS (1: the publisher
# and the pullers in two network namespaces joined by a veth pair, MTU
# 1500, rather than all on loopback, whose 64 KiB MTU no real link has;
# needs root and ip(8)).
set -euo pipefail
nii=${NII_BIN:?set NII_BIN to the nii binary}
k=${1:-1}
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
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

((k >= 1)) || { echo "pullcpu.sh: K is at least 1" >&2; exit 1; }
pubx=() pullx=() pubip=127.0.0.1 pullip=127.0.0.1
if [[ ${NII_BENCH_NETNS:-} == 1 ]]; then
	ns=niibench$$
	ip netns add "${ns}a"
	ip netns add "${ns}b"
	trap 'cleanup; ip netns del "${ns}a"; ip netns del "${ns}b"' EXIT
	ip link add "${ns}x" type veth peer name "${ns}y"
	ip link set "${ns}x" netns "${ns}a"
	ip link set "${ns}y" netns "${ns}b"
	ip -n "${ns}a" addr add 10.213.0.1/24 dev "${ns}x"
	ip -n "${ns}b" addr add 10.213.0.2/24 dev "${ns}y"
	for n in a b; do ip -n "$ns$n" link set lo up; done
	ip -n "${ns}a" link set "${ns}x" up
	ip -n "${ns}b" link set "${ns}y" up
	pubx=(ip netns exec "${ns}a") pullx=(ip netns exec "${ns}b") pubip=10.213.0.1 pullip=10.213.0.2
fi
[[ ${PERF:-} != 1 || $k == 1 ]] || { echo "pullcpu.sh: PERF=1 profiles one puller" >&2; exit 1; }
rm -rf "$dir/pub" "$dir"/pull*
mkdir -p "$dir"
[[ -f $dir/big.bin ]] || head -c $((1 << 30)) /dev/urandom >"$dir/big.bin"
cat "$dir/big.bin" >/dev/null
p2p() { echo "--p2p /ip4/$1/tcp/0 --p2p /ip4/$1/udp/0/quic-v1"; }
"$nii" --home "$dir/pub" init --org benchpub --api 127.0.0.1:0 >/dev/null
# shellcheck disable=SC2046 # p2p's words are meant to split
"${pubx[@]}" "$nii" --home "$dir/pub" run --gossip "$pubip:0" $(p2p "$pubip") >"$dir/pub.log" 2>&1 &
pub=$!
pids+=("$pub")
until_ok "${pubx[@]}" "$nii" --home "$dir/pub" status --json
seed=$(field "$("${pubx[@]}" "$nii" --home "$dir/pub" status --json)" gossip)
"${pubx[@]}" "$nii" --home "$dir/pub" publish "$dir/big.bin" --name big --title big --licence OGL-UK-3.0 -q >/dev/null
pullers=() homes=()
for ((i = 0; i < k; i++)); do
	home=$dir/pull
	((k == 1)) || home=$dir/pull$i
	"$nii" --home "$home" init --org "benchpull$i" --api 127.0.0.1:0 >/dev/null
	if [[ -n ${NII_BENCH_INFLIGHT:-} ]]; then
		sed -i "s/^\[p2p\]\$/[p2p]\nin_flight = '$NII_BENCH_INFLIGHT'/" "$home/config.toml"
	fi
	# shellcheck disable=SC2046
	"${pullx[@]}" "$nii" --home "$home" run --gossip "$pullip:0" $(p2p "$pullip") --join "$seed" >"$home.log" 2>&1 &
	pullers+=($!)
	pids+=($!)
	homes+=("$home")
done
for home in "${homes[@]}"; do until_ok "${pullx[@]}" "$nii" --home "$home" show benchpub/big; done
wrap=()
[[ ${PERF:-} != 1 ]] || wrap=(perf record -a -g -o "$dir/perf.data" --)
pub0=$(cpu "$pub")
start=$(date +%s.%N)
if ((k == 1)); then
	"${wrap[@]}" "${pullx[@]}" "$nii" --home "${homes[0]}" pull benchpub/big -q
	end=$(date +%s.%N)
	echo "pull $(secs "$start" "$end") s, puller cpu $(cpu "${pullers[0]}") s, publisher cpu $(secs "$pub0" "$(cpu "$pub")") s (during the pull)"
	exit
fi
clients=()
for home in "${homes[@]}"; do
	"${pullx[@]}" "$nii" --home "$home" pull benchpub/big -q >/dev/null 2>&1 &
	clients+=($!)
done
for p in "${clients[@]}"; do wait "$p"; done
end=$(date +%s.%N)
pc=0
for p in "${pullers[@]}"; do pc=$(awk -v a="$pc" -v b="$(cpu "$p")" 'BEGIN { printf "%.2f", a + b }'); done
echo "$k pulls $(secs "$start" "$end") s, publisher cpu $(secs "$pub0" "$(cpu "$pub")") s (during the pulls), pullers cpu $pc s"
