# Makefile — thin wrapper over CMake: `make deps`, `make`, `make test`, `make demo`.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
DEBIAN_PACKAGES = cmake g++ make pkg-config libcli11-dev libstb-dev doctest-dev nlohmann-json3-dev \
                  libpcre2-dev libreadline-dev

.PHONY: all deps configure test demo clean sanitize

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

sanitize:
	$(MAKE) test BUILD=build-sanitize CMAKE_FLAGS="-DFP4_SANITIZE=ON -DFP4_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo"

clean:
	rm -rf $(BUILD)
