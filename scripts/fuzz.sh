#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan+UBSan, in
# $FUZZ_BUILD, default build-fuzz) and runs each for SECONDS (default 60) on
# a copy of its seed corpus (tests/fuzz/corpus/<target>), with its dictionary.
# Fails if any target reports a crash, a sanitizer error, a leak, a timeout
# (one input over 5 s) or an out-of-memory (over 2048 MB).
#
#   scripts/fuzz.sh              60 s per target (what `make test-sanitize` runs)
#   scripts/fuzz.sh 3600         an hour per target (docs/reliability.md)
#   FUZZ_TARGETS="fuzz_plan" scripts/fuzz.sh 600
#
# Everything a run produces goes to $FUZZ_BUILD/fuzz-out/<target>/: log,
# corpus (the seeds plus what the run found) and crash-*/leak-*/timeout-*/
# oom-* files. Reproduce one with `$FUZZ_BUILD/tests/fuzz/<target> FILE`;
# fix the bug, then add FILE to tests/fuzz/corpus/<target>/ and a unit test.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
if ! [[ $secs =~ ^[0-9]+$ ]] || [[ $secs -lt 1 ]]; then
  echo "usage: $0 [seconds per target, default 60]" >&2
  exit 2
fi
build=${FUZZ_BUILD:-build-fuzz}
read -r -a targets <<<"${FUZZ_TARGETS:-fuzz_plan fuzz_expr fuzz_queue_messages fuzz_agent_messages}"

for tool in clang clang++; do
  command -v "$tool" >/dev/null || { echo "fuzz: $tool not found (scripts/install-deps.sh --test installs it)" >&2; exit 1; }
done
if [[ ! -f $build/build.ninja ]]; then
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAGENTFLOW_FUZZ=ON
fi
cmake --build "$build" --target "${targets[@]}"

# Readable stacks; -fno-sanitize-recover already makes UBSan fatal.
if command -v llvm-symbolizer >/dev/null; then export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer)}; fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=()
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/$t
  out=$build/fuzz-out/$t
  rm -rf "$out"
  mkdir -p "$out/corpus"
  cp tests/fuzz/corpus/"$t"/* "$out/corpus/"
  dict=()
  [[ -f tests/fuzz/$t.dict ]] && dict=(-dict="tests/fuzz/$t.dict")
  echo "fuzz: $t for ${secs} s (log: $out/log)"
  start=$SECONDS
  rc=0
  "$bin" "${dict[@]}" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -detect_leaks=1 \
    -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" >"$out/log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log")
  artifacts=$(find "$out" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
  if [[ $rc -ne 0 || -n $artifacts ]]; then
    echo "fuzz: $t FAILED (exit $rc) after $((SECONDS - start)) s; the end of its log:" >&2
    tail -n 40 "$out/log" >&2
    for a in $artifacts; do echo "fuzz: reproduce with: $bin $a" >&2; done
    failed+=("$t")
  else
    echo "fuzz: $t ok: ${runs:-?} inputs in $((SECONDS - start)) s, corpus $(find "$out/corpus" -type f | wc -l) files"
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${secs} s without a finding"
