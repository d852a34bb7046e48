#!/usr/bin/env bash
# publish.sh: times 'nii publish' of one file into a fresh daemon against
# sha256sum and cp+sync of the same file, and 'nii export' of it against
# cp and against cp+sync, in the same run, alternating, and prints one line
# per run and the ratios (docs/benchmarks.md, "Publish and export"). export
# fsyncs the file before renaming it into place and plain cp does not, so
# export / cp is the issue's ratio and export / (cp+sync) the like-for-like
# one: both are printed, and where the binary has it, export --no-fsync
# (rename without the fsync, as cp leaves a file) / cp.
#
#	NII_BIN=/tmp/nii deploy/bench/publish.sh [REPS]
#
# Environment: NII_BIN (required), NII_BENCH_MIB (default 1024),
# NII_BENCH_DIR (default: a new directory under /tmp).
set -euo pipefail

nii=${NII_BIN:?set NII_BIN to the nii binary}
reps=${1:-3}
mib=${NII_BENCH_MIB:-1024}
dir=${NII_BENCH_DIR:-$(mktemp -d /tmp/nii-bench.XXXXXX)}
mkdir -p "$dir/src"
pid=
trap '[[ -z $pid ]] || kill $pid 2>/dev/null; wait 2>/dev/null || true' EXIT
now() { date +%s.%N; }
src=$dir/src/big.bin
if [[ ! -f $src || $(stat -c %s "$src") != $((mib << 20)) ]]; then
	head -c $((mib << 20)) /dev/urandom >"$src"
fi
cat "$src" >/dev/null

# timed NAME CMD...: prints "NAME wall".
timed() {
	local name=$1 t0 t1; shift
	t0=$(now); "$@" >/dev/null; t1=$(now)
	awk -v n="$name" -v a="$t0" -v b="$t1" 'BEGIN { printf "%s %.3f\n", n, b - a }'
}
runnii() {
	local home=$dir/home
	[[ -z $pid ]] || { kill $pid; wait $pid 2>/dev/null || true; }
	rm -rf "$home"
	"$nii" --home "$home" init --org bench --api 127.0.0.1:0 >/dev/null
	"$nii" --home "$home" run --gossip 127.0.0.1:0 --p2p /ip4/127.0.0.1/tcp/0 >>"$dir/nii.log" 2>&1 &
	pid=$!
	until "$nii" --home "$home" status >/dev/null 2>&1; do sleep 0.1; done
	timed publish "$nii" --home "$home" publish "$src" --name big --title big --licence OGL-UK-3.0 -q
	rm -f "$dir/export.out"
	timed export "$nii" --home "$home" export bench/big -o "$dir/export.out"
	rm -f "$dir/export.out"
	if "$nii" export --help | grep -q -- --no-fsync; then
		timed export-nofsync "$nii" --home "$home" export bench/big -o "$dir/export.out" --no-fsync
		rm -f "$dir/export.out"
	fi
	# runnii runs in a pipeline's subshell, so the EXIT trap never sees
	# $pid: stop the daemon here, or each run leaves one behind.
	kill $pid; wait $pid 2>/dev/null || true; pid=
}
runsha() { timed sha256sum sha256sum "$src"; }
runcp() {
	rm -f "$dir/cp.out"
	timed cp sh -c "cp '$src' '$dir/cp.out' && sync '$dir/cp.out'"
	rm -f "$dir/cp.out"
	timed cp-nosync cp "$src" "$dir/cp.out"
	rm -f "$dir/cp.out"
}

echo "# $(date -u +%FT%TZ) $mib MiB, $(nproc) cores"
order=(nii sha cp)
for ((r = 0; r < reps; r++)); do
	for ((k = 0; k < 3; k++)); do
		run${order[$(((r + k) % 3))]} | while read -r name wall; do echo "$r $name $wall $(cut -d' ' -f1 /proc/loadavg)"; done
	done
done | tee "$dir/results"

awk -v mib="$mib" '
	{ w[$2, $1] = $3; n = $1 + 1 }
	function stats(name, a, k,   i, j, t) {
		for (i = 0; i < k; i++) for (j = i + 1; j < k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		printf "%-30s min %.2f  median %.2f  max %.2f\n", name, a[0], a[int(k / 2)], a[k - 1]
	}
	END {
		for (i = 0; i < n; i++) a[i] = w["sha256sum", i] / w["publish", i]; stats("publish speed / sha256sum", a, n)
		for (i = 0; i < n; i++) a[i] = w["cp", i] / w["publish", i]; stats("publish speed / cp+sync", a, n)
		for (i = 0; i < n; i++) a[i] = w["cp-nosync", i] / w["export", i]; stats("export speed / cp", a, n)
		for (i = 0; i < n; i++) a[i] = w["cp", i] / w["export", i]; stats("export speed / (cp+sync)", a, n)
		if (w["export-nofsync", 0] > 0) {
			for (i = 0; i < n; i++) a[i] = w["cp-nosync", i] / w["export-nofsync", i]; stats("export --no-fsync speed / cp", a, n)
		}
		for (i = 0; i < n; i++) a[i] = mib * 1.048576 / w["publish", i]; stats("publish MB/s", a, n)
		for (i = 0; i < n; i++) a[i] = mib * 1.048576 / w["sha256sum", i]; stats("sha256sum MB/s", a, n)
		for (i = 0; i < n; i++) a[i] = mib * 1.048576 / w["cp", i]; stats("cp+sync MB/s", a, n)
		for (i = 0; i < n; i++) a[i] = mib * 1.048576 / w["export", i]; stats("export MB/s", a, n)
		for (i = 0; i < n; i++) a[i] = mib * 1.048576 / w["cp-nosync", i]; stats("cp MB/s", a, n)
	}' "$dir/results"
