# agentflow — the two set-up commands on a fresh Debian 12 machine:
#   make run    installs missing packages, builds, starts `agentflow serve --demo`
#   make test   installs missing packages, builds, runs the whole test suite
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
PORT ?= 8000
DATA_DIR ?= .agentflow
CTEST_JOBS ?= 2

.PHONY: all deps deps-test ui-test-deps configure build run test test-unit test-e2e test-sanitize clean

all: build

deps:
	@scripts/install-deps.sh

deps-test:
	@scripts/install-deps.sh --test

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

configure: $(BUILD)/build.ninja

build: deps configure
	cmake --build $(BUILD) --target agentflow

run: build
	$(BUILD)/agentflow serve --demo --port $(PORT) --data-dir $(DATA_DIR)

# The console's browser tests drive Debian's chromium with playwright-core,
# installed from the repository's lock file (no browser download).
tests/ui/node_modules/.package-lock.json: tests/ui/package.json tests/ui/package-lock.json
	cd tests/ui && npm ci --no-audit --no-fund

ui-test-deps: tests/ui/node_modules/.package-lock.json

test: deps-test configure ui-test-deps
	cmake --build $(BUILD)
	cd $(BUILD) && ctest --output-on-failure -j $(CTEST_JOBS) --timeout 600

test-unit: deps-test configure
	cmake --build $(BUILD)
	cd $(BUILD) && ctest --output-on-failure -j $(CTEST_JOBS) -LE e2e

test-e2e: deps-test configure ui-test-deps
	cmake --build $(BUILD)
	cd $(BUILD) && ctest --output-on-failure -L e2e

# The sanitizer runs (CI runs them after `make test`; docs/reliability.md):
# unit tests under ASan+UBSan (build-asan), the executor and queue consumer
# tests under TSan (build-tsan), and each fuzz target for FUZZ_SECONDS
# (build-fuzz). About 30 min on 2 cores from scratch (measured 1769 s).
FUZZ_SECONDS ?= 60
test-sanitize: deps-test
	FUZZ_SECONDS=$(FUZZ_SECONDS) CTEST_JOBS=$(CTEST_JOBS) scripts/sanitize.sh

clean:
	rm -rf $(BUILD)

# Benchmarks (issue 7, docs/benchmarks.md): configures build-bench with the
# image's flags (RelWithDebInfo) and -DAGENTFLOW_BENCH=ON, builds agentflow and
# the bench programs, runs every benchmark in both modes (~10 min, every run
# bounded), writes one JSON line per figure to bench/results/latest.jsonl and
# prints a table. BENCH_ARGS is passed to af-bench (e.g. --quick,
# --only chain10, --modes distributed, --perf DIR).
BENCH_BUILD ?= build-bench
BENCH_ARGS ?=
.PHONY: bench
bench: deps-test
	cmake -S . -B $(BENCH_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAGENTFLOW_BENCH=ON
	cmake --build $(BENCH_BUILD) --target af-bench
	$(BENCH_BUILD)/bench/af-bench --out bench/results/latest.jsonl \
	  --revision "$$(git describe --always --dirty 2>/dev/null || echo unknown)" $(BENCH_ARGS)
