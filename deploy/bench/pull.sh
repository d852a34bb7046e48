#!/usr/bin/env bash
# pull.sh: times 'nii pull' of one file between two real daemons on
# loopback against curl from a Go http.FileServer and an rsync daemon full
# copy of the same file, in the same run, alternating the order, and
# prints one line per run and the ratios (docs/benchmarks.md, "Pull").
# Beside those, the same two made durable as nii's pull is when it returns:
# curl then sync(1) of its file, and rsync --fsync.
#
#	NII_BIN=/tmp/nii go build -o /tmp/nii ./cmd/nii && deploy/bench/pull.sh [REPS]
#
# Environment:
#	NII_BIN              the nii binary (required)
#	FILESERVER_BIN       built from deploy/bench/fileserver.go (built if unset)
#	NII_BENCH_MIB        file size in MiB (default 1024)
#	NII_BENCH_TRANSPORT  the publisher's p2p listen addresses: both (the
#	                     default config: TCP and QUIC), tcp or quic
#	NII_BENCH_OUT        1: 'nii pull -o FILE' (also writes the file out)
#	NII_BENCH_NOFSYNC    1: with NII_BENCH_OUT, 'nii pull -o FILE --no-fsync'
#	NII_BENCH_DIR        work directory (default: a new one under /tmp)
#	NII_BENCH_PROFILE    N: during the first nii run, take an N-second CPU
#	                     profile of both daemons (/debug/pprof, admin
#	                     token) into $NII_BENCH_DIR/{pub,pull}.cpu.pprof
#	NII_BENCH_TRACE      N: during the first nii run, take an N-second
#	                     execution trace of the puller into
#	                     $NII_BENCH_DIR/pull.trace (go tool trace)
#	NII_BENCH_PEERS      1: print the puller's 'nii peers' after each pull
#
# Each nii run pulls into a fresh daemon (new home) so every chunk is
# fetched; CPU is the daemons' and the clients' user+system seconds over
# the run (read from /proc, children included). Needs curl and rsync.
set -euo pipefail

nii=${NII_BIN:?set NII_BIN to the nii binary}
reps=${1:-3}
mib=${NII_BENCH_MIB:-1024}
transport=${NII_BENCH_TRANSPORT:-both}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${NII_BENCH_DIR:-$(mktemp -d /tmp/nii-bench.XXXXXX)}
mkdir -p "$dir"
tck=$(getconf CLK_TCK)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

die() { echo "pull.sh: $*" >&2; exit 1; }
field() { awk -v k="\"$2\":" '$1 == k { v = $2; gsub(/[",]/, "", v); print v; exit }' <<<"$1"; }
cpu() { awk -v t="$tck" '{ printf "%.2f", ($14+$15+$16+$17)/t }' "/proc/$1/stat"; }
now() { date +%s.%N; }
waitfor() { # waitfor SECONDS CMD...: until CMD succeeds
	local end=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || return 1
		sleep 0.1
	done
}

case $transport in
both) p2p=(--p2p /ip4/127.0.0.1/tcp/0 --p2p /ip4/127.0.0.1/udp/0/quic-v1) ;;
tcp) p2p=(--p2p /ip4/127.0.0.1/tcp/0) ;;
quic) p2p=(--p2p /ip4/127.0.0.1/udp/0/quic-v1) ;;
*) die "NII_BENCH_TRANSPORT is both, tcp or quic" ;;
esac

src=$dir/src
mkdir -p "$src"
if [[ ! -f $src/big.bin || $(stat -c %s "$src/big.bin") != $((mib << 20)) ]]; then
	head -c $((mib << 20)) /dev/urandom >"$src/big.bin"
fi
cat "$src/big.bin" >/dev/null # warm the page cache

# The publisher.
pub=$dir/pub
rm -rf "$pub"
"$nii" --home "$pub" init --org benchpub --api 127.0.0.1:0 >/dev/null
"$nii" --home "$pub" run --gossip 127.0.0.1:0 "${p2p[@]}" >>"$dir/pub.log" 2>&1 &
pubpid=$!
pids+=("$pubpid")
waitfor 60 "$nii" --home "$pub" status --json || die "publisher did not start (see $dir/pub.log)"
seed=$(field "$("$nii" --home "$pub" status --json)" gossip)
"$nii" --home "$pub" publish "$src/big.bin" --name big --title big --licence OGL-UK-3.0 -q >/dev/null

# The references.
fs=${FILESERVER_BIN:-}
if [[ -z $fs ]]; then
	fs=$dir/fileserver
	(cd "$here/../.." && go build -o "$fs" deploy/bench/fileserver.go)
fi
rm -f "$dir/fs.addr"
"$fs" "$src" "$dir/fs.addr" 2>>"$dir/fs.log" &
fspid=$!
pids+=("$fspid")
waitfor 10 test -s "$dir/fs.addr" || die "fileserver did not start"
fsaddr=$(cat "$dir/fs.addr")
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'use chroot = no\n[data]\npath = %s\nread only = true\n' "$src" >"$dir/rsyncd.conf"
rsync --daemon --no-detach --config="$dir/rsyncd.conf" --address=127.0.0.1 --port="$rport" 2>>"$dir/rsync.log" &
rsyncpid=$!
pids+=("$rsyncpid")
waitfor 10 rsync "rsync://127.0.0.1:$rport/data/" || die "rsync daemon did not start"

# timed NAME SERVERPID CMD...: runs CMD, prints "NAME wall cpu" (cpu: the
# client's plus the server's, and the puller daemon's if PULLPID is set).
timed() {
	local name=$1 spid=$2; shift 2
	local s0 p0=0 t0 t1 c
	s0=$(cpu "$spid")
	[[ -z ${PULLPID:-} ]] || p0=$(cpu "$PULLPID")
	t0=$(now)
	c=$( { /usr/bin/time -f '%U %S' "$@" >/dev/null 2>"$dir/client.err"; } 2>&1; tail -1 "$dir/client.err")
	t1=$(now)
	local s1 p1=0
	s1=$(cpu "$spid")
	[[ -z ${PULLPID:-} ]] || p1=$(cpu "$PULLPID")
	awk -v n="$name" -v t0="$t0" -v t1="$t1" -v s0="$s0" -v s1="$s1" -v p0="$p0" -v p1="$p1" -v c="$c" \
		'BEGIN { split(c, u, " "); printf "%s %.3f %.2f\n", n, t1-t0, (s1-s0)+(p1-p0)+u[1]+u[2] }'
}

runnii() {
	local home=$dir/pull
	rm -rf "$home"
	"$nii" --home "$home" init --org benchpull --api 127.0.0.1:0 >/dev/null
	"$nii" --home "$home" run --gossip 127.0.0.1:0 --p2p /ip4/127.0.0.1/tcp/0 --p2p /ip4/127.0.0.1/udp/0/quic-v1 --join "$seed" >>"$dir/pull.log" 2>&1 &
	local ppid=$!
	waitfor 60 "$nii" --home "$home" show benchpub/big || { kill $ppid; die "the puller never saw the dataset (see $dir/pull.log)"; }
	local out=() profs=()
	[[ ${NII_BENCH_OUT:-} != 1 ]] || out=(-o "$dir/nii.out")
	[[ ${NII_BENCH_OUT:-}${NII_BENCH_NOFSYNC:-} != 11 ]] || out+=(--no-fsync)
	if [[ -n ${NII_BENCH_PROFILE:-} && ! -f $dir/pull.cpu.pprof ]]; then
		local h
		for h in pub pull; do
			local hh=$pub
			[[ $h == pub ]] || hh=$home
			curl -sf -H "Authorization: Bearer $(cat "$hh/admin.token")" \
				"$(cat "$hh/api.addr")/debug/pprof/profile?seconds=$NII_BENCH_PROFILE" -o "$dir/$h.cpu.pprof" &
			profs+=($!)
		done
	fi
	if [[ -n ${NII_BENCH_TRACE:-} && ! -f $dir/pull.trace ]]; then
		curl -sf -H "Authorization: Bearer $(cat "$home/admin.token")" \
			"$(cat "$home/api.addr")/debug/pprof/trace?seconds=$NII_BENCH_TRACE" -o "$dir/pull.trace" &
		profs+=($!)
	fi
	PULLPID=$ppid timed nii "$pubpid" "$nii" --home "$home" pull benchpub/big -q "${out[@]}"
	for p in "${profs[@]}"; do wait "$p" || true; done
	if [[ -n ${NII_BENCH_PEERS:-} ]]; then "$nii" --home "$home" peers >&2; fi
	if [[ -n ${NII_BENCH_METRICS:-} ]]; then curl -sf "$(cat "$home/api.addr")/metrics" | grep -E '^nii_(pull|p2p)' >&2 || true; fi
	kill $ppid; wait $ppid 2>/dev/null || true
	rm -rf "$home" "$dir/nii.out"
}
runcurl() {
	timed curl "$fspid" curl -sf -o "$dir/curl.out" "http://$fsaddr/big.bin"
	rm -f "$dir/curl.out"
}
runrsync() {
	rm -f "$dir/rsync.out"
	timed rsync "$rsyncpid" rsync "rsync://127.0.0.1:$rport/data/big.bin" "$dir/rsync.out"
	rm -f "$dir/rsync.out"
}
# The like-for-like references: nii's pull is durable when it returns (the
# packs fsynced, then the index), and curl and rsync above are not.
runcurlsync() {
	timed curlsync "$fspid" sh -c 'curl -sf -o "$1" "$2" && sync "$1"' sh "$dir/curl.out" "http://$fsaddr/big.bin"
	rm -f "$dir/curl.out"
}
runrsyncfsync() {
	rm -f "$dir/rsync.out"
	timed rsyncfsync "$rsyncpid" rsync --fsync "rsync://127.0.0.1:$rport/data/big.bin" "$dir/rsync.out"
	rm -f "$dir/rsync.out"
}

echo "# $(date -u +%FT%TZ) $mib MiB, publisher p2p: $transport, out: ${NII_BENCH_OUT:-0}, $(nproc) cores"
echo "# run tool wall_s cpu_s loadavg1"
order=(nii curl rsync curlsync rsyncfsync)
for ((r = 0; r < reps; r++)); do
	for ((k = 0; k < ${#order[@]}; k++)); do
		t=${order[$(((r + k) % ${#order[@]}))]}
		line=$(run$t)
		echo "$r $line $(cut -d' ' -f1 /proc/loadavg)"
	done
done | tee "$dir/results"

awk '
	{ wall[$2, $1] = $3; cpu[$2, $1] = $4; n = $1 + 1 }
	function stats(name, a, k,   i, j, t) {
		for (i = 0; i < k; i++) for (j = i + 1; j < k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		printf "%-28s min %.2f  median %.2f  max %.2f\n", name, a[0], a[int(k / 2)], a[k - 1]
	}
	END {
		for (i = 0; i < n; i++) { a[i] = wall["curl", i] / wall["nii", i] } stats("nii speed / curl", a, n)
		for (i = 0; i < n; i++) { a[i] = wall["rsync", i] / wall["nii", i] } stats("nii speed / rsync", a, n)
		for (i = 0; i < n; i++) { a[i] = cpu["nii", i] / cpu["curl", i] } stats("nii cpu / curl cpu", a, n)
		for (i = 0; i < n; i++) { a[i] = wall["curlsync", i] / wall["nii", i] } stats("nii speed / (curl + sync)", a, n)
		for (i = 0; i < n; i++) { a[i] = wall["rsyncfsync", i] / wall["nii", i] } stats("nii speed / rsync --fsync", a, n)
		for (i = 0; i < n; i++) { a[i] = '"$mib"' * 1.048576 / wall["nii", i] } stats("nii MB/s", a, n)
		for (i = 0; i < n; i++) { a[i] = '"$mib"' * 1.048576 / wall["curl", i] } stats("curl MB/s", a, n)
		for (i = 0; i < n; i++) { a[i] = '"$mib"' * 1.048576 / wall["rsync", i] } stats("rsync MB/s", a, n)
	}' "$dir/results"
