# User-facing entry points; the build itself is Meson (build/ and, for the
# sanitizer run of the unit tests, build-asan/).
MESON ?= meson
BUILD := build
ASAN_BUILD := build-asan
FUZZ_BUILD := build-fuzz
FUZZ_TARGETS := directory node build_request json url aterm nar blake3 closure fastcdc blob_index
FUZZ_TARGETS += nix_serve
# Seconds per target: `make fuzz FUZZ_TIME=3600`; `make check` runs each for 10.
FUZZ_TIME ?= 60

.PHONY: all deps check check-long demo bench fuzz fuzz-build install clean format

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

deps:
	./scripts/install-deps.sh

$(BUILD)/build.ninja:
	$(MESON) setup $(BUILD) --buildtype=debugoptimized

$(ASAN_BUILD)/build.ninja:
	$(MESON) setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

check: deps
	$(MAKE) all
	$(MAKE) $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	KILN_TEST_MUST_RUN=1 $(MESON) test -C $(BUILD) --print-errorlogs --num-processes 2 --no-suite long
	KILN_TEST_MUST_RUN=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		ASAN_OPTIONS=detect_leaks=1 $(MESON) test -C $(ASAN_BUILD) --print-errorlogs --num-processes 2 --suite unit
	$(MAKE) fuzz FUZZ_TIME=10
	$(MAKE) check-long

# The long fault and load tests (tests/long/, minutes each), one at a time.
check-long: all
	KILN_TEST_MUST_RUN=1 $(MESON) test -C $(BUILD) --print-errorlogs --num-processes 1 --suite long

# libFuzzer targets (fuzz/), built with clang and ASan+UBSan; each runs for
# FUZZ_TIME seconds from its seed corpus plus what earlier runs found
# ($(FUZZ_BUILD)/corpus); a crash stops with the input in $(FUZZ_BUILD)/crashes.
$(FUZZ_BUILD)/build.ninja:
	CC=clang $(MESON) setup $(FUZZ_BUILD) --buildtype=debugoptimized -Dfuzz=true -Dman=disabled \
		-Db_sanitize=address,undefined -Db_lundef=false

fuzz-build: $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD) $(addprefix fuzz/fuzz_,$(FUZZ_TARGETS))

fuzz: fuzz-build
	./fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_TIME) $(FUZZ_TARGETS)

demo: deps
	$(MAKE) all
	./scripts/demo.sh

bench:
	./scripts/install-deps.sh --bench
	$(MAKE) all
	./bench/speed.sh

# Installs into meson's prefix (/usr/local); DESTDIR stages it elsewhere.
install: all
	$(MESON) install -C $(BUILD) --no-rebuild $(if $(DESTDIR),--destdir $(DESTDIR))

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
