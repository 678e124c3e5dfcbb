#!/usr/bin/env bash
# Instructions `agentflow serve` executes per chain10 run, counted by
# valgrind's callgrind: a figure that does not move with the host's speed,
# for comparing two builds where wall-clock A/Bs drown in the machine's noise
# (docs/benchmarks.md item 38).
#
#   bench/callgrind_serve.sh [--binary PATH] [--bench PATH] [--out DIR] [--preload LIB]
#
# Runs `af-bench --quick --modes embedded --only chain10` (a few hundred
# runs, ~20 s under callgrind) against serve under callgrind, one profile per
# thread, and prints instructions per run (all threads, and the busiest
# thread: the engine's loop) and that thread's top functions. --preload puts
# a library in serve's LD_PRELOAD (another malloc, say).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
binary="$root/build/agentflow"
bench="$root/build/bench/af-bench"
out=""
preload=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$(realpath "$2")"; shift 2 ;;
    --bench) bench="$(realpath "$2")"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --preload) preload="$(realpath "$2")"; shift 2 ;;
    *) echo "usage: $0 [--binary PATH] [--bench PATH] [--out DIR] [--preload LIB]" >&2; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
[ -x "$bench" ] || { echo "$bench not built: cmake -DAGENTFLOW_BENCH=ON, then build af-bench" >&2; exit 1; }
if [ -z "$out" ]; then out="$(mktemp -d /tmp/af-callgrind.XXXXXX)"; fi
mkdir -p "$out"
out="$(realpath "$out")"
rm -f "$out"/callgrind.*

# af-bench starts serve through AGENTFLOW_E2E_BINARY; this wrapper runs it
# under callgrind (%p: serve's pid, one file per thread with -NN).
wrapper="$out/serve-under-callgrind"
{
  echo '#!/bin/sh'
  [ -n "$preload" ] && echo "export LD_PRELOAD='$preload'"
  echo "exec valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file='$out/callgrind.%p' '$binary' \"\$@\""
} >"$wrapper"
chmod +x "$wrapper"

AGENTFLOW_E2E_BINARY="$wrapper" "$bench" --modes embedded --only chain10 --quick --attempts 1 --wait-quiet 1 \
  --out "$out/af-bench.jsonl" >"$out/af-bench.log" 2>&1 || {
  echo "af-bench failed; see $out/af-bench.log" >&2
  exit 1
}

python3 - "$out" <<'EOF'
import glob, re, subprocess, sys

out = sys.argv[1]
files = sorted(glob.glob(out + "/callgrind.*-[0-9][0-9]"))
if not files:
    sys.exit("no callgrind profiles in " + out)

def total(f):
    for line in open(f, errors="replace"):
        if line.startswith("summary:"):
            return int(line.split()[1])
    return 0

def calls_to(f, pattern):
    """Calls made to functions whose name matches pattern (the cfn= / calls= lines)."""
    names, n, callee = {}, 0, None
    for line in open(f, errors="replace"):
        m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
        if m:
            kind, ident, name = m.groups()
            if name:
                names[ident] = name
            callee = names.get(ident, "") if kind == "cfn" else None
            continue
        if line.startswith("calls=") and callee is not None:
            if re.search(pattern, callee):
                n += int(line.split()[0][len("calls="):])
            callee = None
    return n

# Once per run in serve: the execution request's ack on the embedded queue.
runs = sum(calls_to(f, r"QueueCore::Ack\(unsigned long") for f in files)
if runs == 0:
    sys.exit("no runs found in the profiles")
totals = {f: total(f) for f in files}
busiest = max(totals, key=totals.get)
print(f"runs: {runs} (chain10, 10 steps each)")
print(f"instructions per run, all threads: {sum(totals.values()) / runs:,.0f}")
print(f"instructions per run, busiest thread ({busiest.rsplit('-', 1)[1]}): {totals[busiest] / runs:,.0f}")
print(f"profiles: {out} (callgrind_annotate FILE)")
print("\ntop functions of the busiest thread (self, per run):")
report = subprocess.run(["callgrind_annotate", busiest], capture_output=True, text=True).stdout
shown = 0
for line in report.splitlines():
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)", line)
    if not m or "PROGRAM TOTALS" in line:
        continue
    name = re.sub(r"nlohmann::json_abi_v3_11_2::basic_json<.*?>", "json", m.group(2))
    print(f"  {int(m.group(1).replace(',', '')) / runs:>10,.0f}  {name[:110]}")
    shown += 1
    if shown == 15:
        break
EOF
