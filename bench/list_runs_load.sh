#!/bin/bash
# A reading client for af-bench's trigger figure (docs/benchmarks.md, item
# 28): lists 100 runs at a time, over one keep-alive connection per 100
# requests, for 9 s, against the api whose pid is $1; prints one line per
# 100 lists (status counts, body size, mean and max seconds of curl).
#   af-bench --modes distributed --only trigger --attempts 1 \
#     --attach "$PWD/bench/list_runs_load.sh {pid}" --attach-phase trigger --keep-logs DIR
set -u
pid=$1
port=$(ss -ltnpH | grep "pid=$pid," | awk '{print $4}' | sed 's/.*://' | head -1)
cfg=$(mktemp)
trap 'rm -f "$cfg"' EXIT
for _ in $(seq 1 100); do
  echo "url = \"http://127.0.0.1:$port/api/v1/runs?limit=100\""
  echo "output = /dev/null"
done > "$cfg"
sleep 1.5  # the warm-up's first runs
end=$((SECONDS + 9))
while [ $SECONDS -lt $end ]; do
  curl -s -K "$cfg" -w "%{http_code} %{time_total} %{size_download}\n" |
    awk '{c[$1]++; b=$3; n++; s+=$2; if ($2 > m) m = $2}
         END {for (k in c) printf "%s:%d ", k, c[k]; printf "bytes %d lists %d mean %.2f ms max %.1f ms\n", b, n, s/n*1000, m*1000}'
done
