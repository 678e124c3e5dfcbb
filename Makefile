# agentflow — the two set-up commands on a fresh Debian 12 machine:
#   make run    installs missing packages, builds, starts `agentflow serve --demo`
#   make test   installs missing packages, builds, runs the whole test suite
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
PORT ?= 8000
DATA_DIR ?= .agentflow
CTEST_JOBS ?= 2

.PHONY: all deps deps-test configure build run test test-unit test-e2e clean

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

test: deps-test configure
	cmake --build $(BUILD)
	cd $(BUILD) && ctest --output-on-failure -j $(CTEST_JOBS) --timeout 600

test-unit: deps-test configure
	cmake --build $(BUILD)
	cd $(BUILD) && ctest --output-on-failure -j $(CTEST_JOBS) -LE e2e

test-e2e: deps-test configure
	cmake --build $(BUILD)
	cd $(BUILD) && ctest --output-on-failure -L e2e

clean:
	rm -rf $(BUILD)
