# Thin wrapper over CMake (DESIGN.md §9). `make test` and `make demo` install
# missing dependencies first, so both work on a fresh Debian machine.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)

.PHONY: all deps build test test-asan demo bench clean

all: build

deps:
	@bash scripts/install-deps.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Unit tests under ASan+UBSan (a separate build), then every test on the release build.
test-asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLM_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j 1

test: deps build test-asan
	@cd $(BUILD) && ctest --output-on-failure -j 1

demo: deps build
	@bash scripts/demo.sh

bench: deps build
	@bash bench/run_all.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
