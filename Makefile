# Thin wrapper over CMake for the README's commands.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all deps build test test-fast test-asan test-tsan test-fuzz demo bench bench-peft medical pretrain clean

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# The whole suite: release build, then ASan+UBSan build, then the threaded tests under
# ThreadSanitizer, then short fuzz runs.
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-tsan
	$(MAKE) --no-print-directory test-fuzz

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMMT_SANITIZE=ON -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS)

# Threads without OpenMP (libgomp is not instrumented); only the tests labelled threads.
test-tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DMMT_TSAN=ON -DMMT_OPENMP=OFF -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest --output-on-failure -j $(JOBS) -L threads

test-fuzz: deps
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DMMT_FUZZ=ON -DMMT_OPENMP=OFF -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target fuzzers
	cd build-fuzz && ctest --output-on-failure -L fuzz

demo: build
	bash scripts/demo.sh

bench: build
	bash scripts/bench.sh

# The PEFT method comparison on the embedded default model: bench/results/peft_methods.md.
bench-peft: build
	bash scripts/bench_peft.sh

# The medical example: report captions of chest radiographs from DICOM files (docs/medical.md),
# measured into bench/results/medical.md.
medical: build
	bash scripts/bench_medical.sh

# Rebuilds the embedded default model (models/mmtune-clip-tiny) from scratch.
pretrain: build
	bash scripts/pretrain.sh

# Rebuilds the embedded default captioner (models/mmtune-git-tiny) from scratch (about 20 minutes
# on two idle cores; docs/default_captioner.md). STEPS, SYNTH, BATCH, LR, SEED override the defaults.
.PHONY: pretrain-caption
pretrain-caption: build
	BIN=$(BUILD)/mmtune bash scripts/pretrain_caption.sh

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
