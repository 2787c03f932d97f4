#!/bin/bash
# Side-by-side performance against the peer: a 3-member etcd on loopback
# (../shared/peers/etcd.sh) and a 3-node Meridian cluster on loopback (spread
# placement, real fsync, ε from a local chronyd), driven in alternation in
# one sitting so that both see the same machine.
#
#   scripts/compare-etcd.sh [DURATION] [ROUNDS]     (defaults: 10s, 3)
#
# Prints every run, then the median of each figure over the rounds:
#   writes    64 clients: Meridian kv puts          vs etcd puts
#   write1     1 client:  Meridian kv puts          vs etcd puts
#   reads     64 clients: Meridian strong reads     vs etcd linearizable gets
#   txn2      64 clients: Meridian 2-group bank txn vs etcd 2-key txns
set -euo pipefail
DUR=${1:-10s}
ROUNDS=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_SCRIPT:-$root/../shared/peers/etcd.sh}
work=$(mktemp -d /tmp/meridian-compare.XXXXXX)
M=$root/bin/meridian
NTP_PORT=${NTP_PORT:-11131}

cleanup() {
  set +e
  for p in "$work"/m*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
  "$peers" stop "$work/etcd" >/dev/null 2>&1
  [ -f "$work/chrony/chronyd.pid" ] && kill "$(cat "$work/chrony/chronyd.pid")" 2>/dev/null
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && make -s build)
"$peers" build

# A local NTP server for the nodes' interval clocks.
command -v chronyd >/dev/null || "$root/scripts/ensure-deps.sh"
mkdir -p "$work/chrony"
cat >"$work/chrony/chrony.conf" <<EOF
port $NTP_PORT
local stratum 8
allow 127.0.0.1
bindaddress 127.0.0.1
driftfile $work/chrony/drift
pidfile $work/chrony/chronyd.pid
cmdport 0
EOF
chronyd -x -u root -f "$work/chrony/chrony.conf" 2>/dev/null || chronyd -x -f "$work/chrony/chrony.conf"

# Meridian: three nodes in three regions, every shard a 3-voter group.
regions=(us-east1 us-west1 europe-west1)
for i in 1 2 3; do
  join=""; [ "$i" -gt 1 ] && join="--join 127.0.0.1:36257"
  "$M" start --insecure --region "${regions[$((i-1))]}" --listen "127.0.0.1:3625$((6+i))" \
    --data-dir "$work/m$i" --ntp "127.0.0.1:$NTP_PORT" $join 2>"$work/m$i.log" &
  echo $! >"$work/m$i.pid"
done
sleep 2
"$M" init --insecure --host 127.0.0.1:36257 --policy spread --replicas 3 >/dev/null
sleep 3
"$peers" start "$work/etcd"

MH=127.0.0.1:36257,127.0.0.1:36258,127.0.0.1:36259
# meridian_run ARGS...: runs a workload; prints "ops/s p50ms" from its summary.
meridian_run() {
  "$M" workload run --insecure --host "$MH" --region us-east1 --duration "$DUR" "$@" 2>>"$work/workload.err" |
    tee -a "$work/workload.out" | awk '/ops\(total\)/ {getline; print $4, $6}'
}
# etcd_run ARGS...: "op clients=N ops/s=X p50=Yms p99=Zms" → "X Y".
etcd_run() { "$peers" load -d "$DUR" "$@" | sed -E 's/.*ops\/s=([0-9.]+) p50=([0-9.]+)ms.*/\1 \2/'; }

declare -A R
for r in $(seq "$ROUNDS"); do
  R[writes_m]+="$(meridian_run kv --concurrency 64 --read-percent 0)\n"
  R[writes_e]+="$(etcd_run -clients 64 -op put)\n"
  R[write1_m]+="$(meridian_run kv --concurrency 1 --read-percent 0)\n"
  R[write1_e]+="$(etcd_run -clients 1 -op put)\n"
  R[reads_m]+="$(meridian_run kv --concurrency 64 --read-percent 100)\n"
  R[reads_e]+="$(etcd_run -clients 64 -op get)\n"
  R[txn2_m]+="$(meridian_run bank --concurrency 64 --accounts 10000 --cross-shard)\n"
  R[txn2_e]+="$(etcd_run -clients 64 -op txn)\n"
  echo "round $r done" >&2
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf '%-8s %12s %12s %8s %10s %10s\n' figure meridian/s etcd/s ratio m-p50ms e-p50ms
for k in writes write1 reads txn2; do
  echo -e "runs $k meridian: $(echo -e "${R[${k}_m]}" | tr '\n' ';')  etcd: $(echo -e "${R[${k}_e]}" | tr '\n' ';')" >&2
  mo=$(echo -e "${R[${k}_m]}" | awk 'NF {print $1}' | median)
  eo=$(echo -e "${R[${k}_e]}" | awk 'NF {print $1}' | median)
  ml=$(echo -e "${R[${k}_m]}" | awk 'NF {print $2}' | median)
  el=$(echo -e "${R[${k}_e]}" | awk 'NF {print $2}' | median)
  printf '%-8s %12.0f %12.0f %8.2f %10.2f %10.2f\n' "$k" "$mo" "$eo" "$(echo "$mo $eo" | awk '{print ($2>0)?$1/$2:0}')" "$ml" "$el"
done
