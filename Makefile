# Makefile — thin wrapper over CMake: `make deps`, `make`, `make test`, `make demo`, `make sanitize`,
# `make sanitize-unit`, `make test-cuda-emu`, `make sanitize-cuda-emu`, `make fuzz`.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
DEBIAN_PACKAGES = cmake g++ make pkg-config libcli11-dev libstb-dev doctest-dev nlohmann-json3-dev \
                  libpcre2-dev libjpeg-dev libwebp-dev libreadline-dev clang libclang-rt-14-dev
FUZZ_SECONDS ?= 60
FUZZ_FLAGS = -fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined

.PHONY: all deps configure test demo clean sanitize sanitize-unit test-cuda-emu sanitize-cuda-emu fuzz

all: configure
	cmake --build $(BUILD) -j $(JOBS)

configure: $(BUILD)/CMakeCache.txt

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $$missing; \
	fi

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: all
	$(BUILD)/bin/chat -m tests/data/tiny-kjv/nvfp4 --temp 0 -n 48 -p "Psalms 23"
	$(BUILD)/bin/chat -m tests/data/tiny-kjv/nvfp4 --temp 0 -n 16 -p "What is in the image?" \
	    --image tests/data/tiny-kjv/images/red_circle.png

# ASan + UBSan build and ctest; halt_on_error makes any undefined behaviour fail its test.
sanitize:
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $(MAKE) test BUILD=build-sanitize \
	    CMAKE_FLAGS="-DFP4_SANITIZE=ON -DFP4_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo"

# The same build, the library unit tests only (no binaries to build): what CI runs after `make test`.
SANITIZE_UNIT = test_numeric test_ops test_fusion test_nvfp4_tile test_backend_ops test_loader test_tokenizer test_image test_quantize \
                test_chat test_golden test_perplexity test_prompt_cache
sanitize-unit:
	cmake -S . -B build-sanitize -DFP4_SANITIZE=ON -DFP4_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build-sanitize -j $(JOBS) --target $(SANITIZE_UNIT)
	cd build-sanitize && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    ctest --output-on-failure -j $(JOBS) -R "^($(shell echo $(SANITIZE_UNIT) | tr ' ' '|'))$$"

# The CUDA backend on the CPU (tests/cuda-emu, no GPU needed): every test with the CUDA backend present, then
# the goldens and chat again with its five speed-ups off (test_backend_ops sets them case by case), and the
# backend test with threads and blocks run in reverse order (a race gives another result there) and with
# kernels assumed to use 128 registers (launches sized by occupancy then take other shapes).
CUDA_PLAIN = FP4_CUDA_FUSE=0 FP4_CUDA_PDL=0 FP4_CUDA_FLASH=0 FP4_CUDA_GRAPHS=0 FP4_CUDA_BF16_X=0
test-cuda-emu:
	cmake -S . -B build-emu -DFP4_CUDA_EMU=ON
	cmake --build build-emu -j $(JOBS)
	cd build-emu && ctest --output-on-failure -j $(JOBS)
	cd build-emu && $(CUDA_PLAIN) ctest --output-on-failure -j $(JOBS) -R "^(test_golden|test_cli_chat|test_chat)$$"
	cd build-emu && FP4_CUDA_EMU_ORDER=reverse FP4_CUDA_EMU_REGS=128 ctest --output-on-failure -R "^test_backend_ops$$"

# The emulated CUDA backend under ASan + UBSan (device memory is allocated to the byte there, so a kernel's
# out-of-bounds access shows): the backend test, every op at many shapes (the goldens, whose long prefills
# run through emulated flash attention, take far longer there).
sanitize-cuda-emu:
	cmake -S . -B build-emu-asan -DFP4_CUDA_EMU=ON -DFP4_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build-emu-asan -j $(JOBS) --target test_backend_ops test_cuda_emu
	cd build-emu-asan && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    ctest --output-on-failure -j $(JOBS) -R "^(test_backend_ops|test_cuda_emu)$$"

# libFuzzer targets (tests/fuzz) with ASan + UBSan, FUZZ_SECONDS each; crashes go to build-fuzz/artifacts.
fuzz:
	cmake -S . -B build-fuzz -DFP4_FUZZ=ON -DFP4_SANITIZE=ON -DFP4_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	    "-DCMAKE_C_FLAGS=$(FUZZ_FLAGS)" "-DCMAKE_CXX_FLAGS=$(FUZZ_FLAGS)"
	cmake --build build-fuzz -j $(JOBS) --target fuzz-targets
	tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD)
