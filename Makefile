# Front door. `make run` and `make test` do all set-up on a fresh Debian 12.
BUILD     ?= build
BUILD_SAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
CMAKE_ARGS ?=
JOBS      ?= $(shell nproc)

.PHONY: all deps build run test asan test-asan fuzz clean bench

all: build

deps:
	@sh scripts/deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)

build: deps $(BUILD)/build.ninja
	@ninja -C $(BUILD)

run: build
	@mkdir -p var
	$(BUILD)/vspcd -d --state-dir ./var

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(BUILD_SAN)/build.ninja:
	cmake -S . -B $(BUILD_SAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	    -DVSPC_SANITIZE=ON -DVSPC_WERROR=ON $(CMAKE_ARGS)

asan: deps $(BUILD_SAN)/build.ninja
	@ninja -C $(BUILD_SAN)

test-asan: asan
	cd $(BUILD_SAN) && VSPC_TEST_SCALE=small ctest --output-on-failure -j $(JOBS)

$(BUILD_FUZZ)/build.ninja:
	CC=clang cmake -S . -B $(BUILD_FUZZ) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	    -DVSPC_FUZZ=ON $(CMAKE_ARGS)

fuzz: deps $(BUILD_FUZZ)/build.ninja
	@ninja -C $(BUILD_FUZZ)
	sh tests/fuzz/run.sh $(BUILD_FUZZ) $${FUZZ_RUNS:-200000}

# Benchmarks (issue 6): not tests, not CI; about 10 minutes. See BENCHMARKS.md.
BUILD_BENCH ?= build-bench

bench: deps
	cmake -S . -B $(BUILD_BENCH) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	    -DVSPC_BENCH=ON $(CMAKE_ARGS)
	@ninja -C $(BUILD_BENCH)
	VSPC_BUILD=$(CURDIR)/$(BUILD_BENCH) python3 bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_FUZZ)
