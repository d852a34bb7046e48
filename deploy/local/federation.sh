#!/usr/bin/env bash
# federation.sh: run a federation of N separate nii processes on this
# machine, each with its own home and ports, joined through the first.
#
#   deploy/local/federation.sh [N]    start N nodes (default 3); Ctrl-C stops them
#   deploy/local/federation.sh stop   stop the nodes a running federation.sh started
#
# Unlike 'nii demo' (one process, sample data), these are real 'nii run'
# daemons, as an operator would run them: kill one, restart it, publish into
# any of them with 'nii --home HOME publish ...'.
#
# Environment:
#   NII_FED_DIR     where the homes go (default ./nii-federation); kept on exit
#   NII_BIN         the nii binary (default: $NII_FED_DIR/bin/nii, built with 'go build' if missing)
#   NII_BASE_PORT   node i (from 0) listens on gossip BASE+10i, API BASE+10i+1, libp2p BASE+10i+2
#                   (default 17946); 0 lets every node pick free ports
#   NII_FEDERATION  the federation's name (default local)
#   NII_TIMEOUT     seconds to wait for every node to see all N members (default 60)
#
# Logs are in HOME/nii.log; the pids in $NII_FED_DIR/pids.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=${NII_FED_DIR:-./nii-federation}
base=${NII_BASE_PORT:-17946}
federation=${NII_FEDERATION:-local}
timeout=${NII_TIMEOUT:-60}
orgs=(greenwich lambeth southwark camden hackney islington lewisham newham tower-hamlets westminster)

die() { echo "federation.sh: $*" >&2; exit 1; }

# alive PID HOME: is PID still the nii daemon of HOME (not a reused pid)?
alive() {
	local args
	args=$(ps -o args= -p "$1" 2>/dev/null) || return 1
	[[ $args == *"--home $2 run"* ]]
}

# stop_all: SIGTERM every recorded daemon, wait for them (deadline 20 s),
# then SIGKILL any that are left.
stop_all() {
	local pidfile=$dir/pids pids=() homes=() pid home left i k
	[[ -f $pidfile ]] || return 0
	# Read the list once: the foreground script removes it when its
	# daemons have exited, which may be while this loop still runs.
	while read -r pid home; do
		pids+=("$pid") homes+=("$home")
	done <"$pidfile"
	for k in "${!pids[@]}"; do
		if alive "${pids[k]}" "${homes[k]}"; then kill -TERM "${pids[k]}" 2>/dev/null || true; fi
	done
	for ((i = 0; i < 200; i++)); do
		left=0
		for k in "${!pids[@]}"; do
			if alive "${pids[k]}" "${homes[k]}"; then left=1; fi
		done
		((left)) || break
		sleep 0.1
	done
	for k in "${!pids[@]}"; do
		if alive "${pids[k]}" "${homes[k]}"; then
			echo "federation.sh: pid ${pids[k]} (${homes[k]}) did not stop within 20s; killing it" >&2
			kill -KILL "${pids[k]}" 2>/dev/null || true
		fi
	done
	rm -f "$pidfile"
}

# field JSON KEY: the first "KEY": value in nii's --json output.
field() {
	awk -v k="\"$2\":" '$1 == k { v = $2; gsub(/[",]/, "", v); print v; exit }' <<<"$1"
}

if [[ ${1:-} == stop ]]; then
	[[ -f $dir/pids ]] || die "no federation recorded in $dir (set NII_FED_DIR to the one you started)"
	stop_all
	echo "stopped the federation in $dir"
	exit 0
fi

n=${1:-3}
[[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 50)) || die "N must be a whole number from 1 to 50, not '$n'"
[[ $base =~ ^[0-9]+$ ]] || die "NII_BASE_PORT must be a port number"
((base == 0 || base + 10 * n < 65536)) || die "NII_BASE_PORT $base leaves no room for $n nodes"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [[ -f $dir/pids ]]; then
	while read -r pid home; do
		alive "$pid" "$home" && die "a federation is already running in $dir (pid $pid); run 'federation.sh stop' first"
	done <"$dir/pids"
	rm -f "$dir/pids"
fi

nii=${NII_BIN:-$dir/bin/nii}
if [[ ! -x $nii ]]; then
	[[ -z ${NII_BIN:-} ]] || die "NII_BIN=$NII_BIN is not an executable"
	command -v go >/dev/null || die "no nii binary at $nii and no go to build one: set NII_BIN"
	echo "building nii into $nii" >&2
	(cd "$root" && go build -o "$nii" ./cmd/nii)
fi

trap 'echo; echo "stopping..." >&2; stop_all; wait; exit 0' INT TERM

homes=() seed=""
for ((i = 0; i < n; i++)); do
	org=${orgs[i]:-node$((i + 1))}
	home=$dir/$org
	homes+=("$home")
	if ((base == 0)); then
		gossip=127.0.0.1:0 api=127.0.0.1:0 p2p=/ip4/127.0.0.1/tcp/0
	else
		p=$((base + 10 * i))
		gossip=127.0.0.1:$p api=127.0.0.1:$((p + 1)) p2p=/ip4/127.0.0.1/tcp/$((p + 2))
	fi
	if [[ ! -f $home/config.toml ]]; then
		"$nii" --home "$home" init --org "$org" --federation "$federation" --api "$api" >/dev/null
	fi
	args=(--home "$home" run --api "$api" --gossip "$gossip" --p2p "$p2p")
	[[ -z $seed ]] || args+=(--join "$seed")
	"$nii" "${args[@]}" >>"$home/nii.log" 2>&1 &
	echo "$! $home" >>"$dir/pids"
	if [[ -z $seed ]]; then
		# The seed's gossip address (it may have picked a free port).
		for ((t = 0; t < timeout * 10; t++)); do
			if st=$("$nii" --home "$home" status --json 2>/dev/null); then
				seed=$(field "$st" gossip)
				break
			fi
			kill -0 "$!" 2>/dev/null || { cat "$home/nii.log" >&2; stop_all; die "$org's daemon exited"; }
			sleep 0.1
		done
		[[ -n $seed ]] || { stop_all; die "the seed node did not come up within ${timeout}s (see $home/nii.log)"; }
	fi
done

# Wait, with a deadline, until every node sees all n members.
deadline=$((SECONDS + timeout))
for home in "${homes[@]}"; do
	while :; do
		members=0
		if st=$("$nii" --home "$home" status --json 2>/dev/null); then
			members=$(field "$st" members)
		fi
		((members == n)) && break
		if ((SECONDS >= deadline)); then
			stop_all
			die "$(basename "$home") sees $members of $n members after ${timeout}s (see $home/nii.log)"
		fi
		sleep 0.2
	done
done

echo "federation '$federation' of $n nodes is up; every node sees $n members"
printf '%-14s %-28s %-22s %s\n' ORG API GOSSIP HOME
for home in "${homes[@]}"; do
	st=$("$nii" --home "$home" status --json)
	printf '%-14s %-28s %-22s %s\n' "$(basename "$home")" "$(field "$st" api)" "$(field "$st" gossip)" "$home"
done
cat <<EOF

Try:
  $nii --home ${homes[0]} publish FILE.csv --name spend --keyword spend
  $nii --home ${homes[n - 1]} search spend
  $nii --home ${homes[n - 1]} peers
Logs are in HOME/nii.log. Ctrl-C here, or '$0 stop' elsewhere (same NII_FED_DIR), stops every node.
EOF

# Serve until the nodes exit ('federation.sh stop') or a signal runs the trap.
wait
rm -f "$dir/pids"
