#!/usr/bin/env bash
# The sanitizer runs of the test path (`make test-sanitize`, run by .ci/run
# after `make test`; docs/reliability.md):
#   asan  the unit tests (every ctest test without the e2e, distributed,
#         kafka, pg or deploy label) built with ASan+UBSan in build-asan
#         (-DAGENTFLOW_SANITIZE=ON), leaks detected, any UBSan report fatal
#   tsan  the tests of the executor, the execution consumer, the queue
#         consumers, the API with its store worker, the agent directory, the
#         stores with SQLite's checkpoint thread, the bridge, the HTTP
#         client and server, the Kafka agent caller's reply matching and the
#         registry's health checker (executor_test,
#         queue_test, queue_kafkatest, api_test, dispatch_test, agent_test,
#         storage_test, bridge_test, http_test, agent_kafka_test,
#         registry_test) built with
#         ThreadSanitizer in build-tsan (-DAGENTFLOW_TSAN=ON), with
#         tests/sanitizers/tsan_c11_threads.c preloaded for librdkafka
#   fuzz  scripts/fuzz.sh $FUZZ_SECONDS (default 60 s per target)
# Usage: scripts/sanitize.sh [asan] [tsan] [fuzz]   (none: all three)
# Only the targets these runs need are built, incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

ASAN_BUILD=${ASAN_BUILD:-build-asan}
TSAN_BUILD=${TSAN_BUILD:-build-tsan}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
CTEST_JOBS=${CTEST_JOBS:-2}
SUPP=$PWD/tests/sanitizers
# The unit tests: what `make test` runs minus these labels.
NOT_UNIT='^(e2e|distributed|kafka|pg|deploy)$'
# The labelled test binaries are not built here; ctest lists each as one
# unlabelled "<binary>_NOT_BUILT" test. (A unit test that fails to build
# fails the build step before ctest runs.)
NOT_BUILT='_NOT_BUILT$'
TSAN_TESTS=(executor_test queue_test queue_kafkatest api_test dispatch_test agent_test storage_test bridge_test http_test agent_kafka_test registry_test)

runs=("$@")
[[ ${#runs[@]} -eq 0 ]] && runs=(asan tsan fuzz)

# ":suppressions=FILE" for tests/sanitizers/<name>.supp if there is one
# (each entry says why it is there).
supp() { [[ -f $SUPP/$1.supp ]] && echo ":suppressions=$SUPP/$1.supp" || true; }

quiet() { "$@" >/dev/null; }

timed() {
  local what=$1 start=$SECONDS
  shift
  echo "sanitize: $what"
  "$@"
  echo "sanitize: $what took $((SECONDS - start)) s"
}

asan() {
  timed "configure $ASAN_BUILD" quiet cmake -S . -B "$ASAN_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DAGENTFLOW_SANITIZE=ON
  # unit_tests: every agentflow_test without labels (CMakeLists.txt).
  timed "build the unit tests (ASan+UBSan)" cmake --build "$ASAN_BUILD" --target unit_tests
  export ASAN_OPTIONS="detect_leaks=1$(supp asan)"
  export LSAN_OPTIONS="print_suppressions=0$(supp lsan)"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1$(supp ubsan)"
  timed "run the unit tests (ASan+UBSan)" \
    bash -c "cd '$ASAN_BUILD' && ctest --output-on-failure -j '$CTEST_JOBS' --timeout 600 -LE '$NOT_UNIT' -E '$NOT_BUILT'"
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
}

tsan() {
  timed "configure $TSAN_BUILD" quiet cmake -S . -B "$TSAN_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DAGENTFLOW_TSAN=ON
  timed "build ${TSAN_TESTS[*]} (TSan)" cmake --build "$TSAN_BUILD" --target "${TSAN_TESTS[@]}"
  # librdkafka starts its threads with C11 thrd_create, which g++ 12's TSan
  # does not intercept (its first malloc on such a thread crashes TSan):
  # preload C11 threads on top of pthreads (tests/sanitizers/tsan_c11_threads.c).
  # Exported, so agentflow-kafka-mock, started by queue_kafkatest, gets it too.
  local shim
  shim=$(cd "$TSAN_BUILD" && pwd)/libaf_tsan_c11_threads.so
  cc -std=c11 -Wall -Wextra -Werror -O1 -g -shared -fPIC -o "$shim" tests/sanitizers/tsan_c11_threads.c
  export LD_PRELOAD=$shim
  export TSAN_OPTIONS="second_deadlock_stack=1$(supp tsan)"
  # TSan maps fixed address ranges: newer kernels' larger mmap randomization
  # can collide with them ("unexpected memory mapping"); run without ASLR
  # where that is allowed.
  local norand=()
  if setarch "$(uname -m)" -R true 2>/dev/null; then norand=(setarch "$(uname -m)" -R); fi
  # Each binary runs all its tests in one process (as gtest does without
  # ctest): build-tsan builds only these, so its ctest would list the other
  # suites as NOT_BUILT.
  local t bin
  for t in "${TSAN_TESTS[@]}"; do
    bin=$(find "$TSAN_BUILD/src" -type f -name "$t" -perm -u+x | head -n 1)
    timed "run $t (TSan)" timeout 1200 "${norand[@]}" "$bin" --gtest_brief=1
  done
  unset TSAN_OPTIONS LD_PRELOAD
}

fuzz() {
  timed "fuzz ${FUZZ_SECONDS} s per target" scripts/fuzz.sh "$FUZZ_SECONDS"
}

for r in "${runs[@]}"; do
  case "$r" in
    asan | tsan | fuzz) "$r" ;;
    *) echo "usage: $0 [asan] [tsan] [fuzz]" >&2; exit 2 ;;
  esac
done
echo "sanitize: ${runs[*]} passed"
