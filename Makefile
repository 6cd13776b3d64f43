# deepc - build, test, install. Sources are discovered by directory:
#   core/*.c convert/*.c arch/*.c -> libdeepc.a / libdeepc.so
#   apps/*.c                      -> the deepc CLI
#   test/support/*.c              -> helpers linked into tests and tools
#   test/test_*.c                 -> one CMocka test binary each
#   test/tools/*.c                -> one helper program each (generator, ...)
# `make SAN=1 test` builds everything with ASan+UBSan into build-san/.

CC      ?= cc
PREFIX  ?= /usr/local
SOVER   := 0
VERSION := 0.1.0
UNAME_S := $(shell uname -s)
UNAME_M := $(shell uname -m)

ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     ?= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else
BUILD   ?= build
OPT     ?= -O2 -g
LDSAN   :=
endif

CPPFLAGS += -Icore -D_DEFAULT_SOURCE -D_DARWIN_C_SOURCE -DDEEPC_VERSION=\"$(VERSION)\"
CFLAGS   += -std=c11 $(OPT) -Wall -Wextra $(WERROR) -fPIC -pthread -MMD -MP
LDLIBS   += -lm -lpthread

# ---- per-ISA flags: each arch file gets only its own -m flags -------------
ARCH_FLAGS_scalar :=
ifneq ($(filter x86_64 amd64 i686,$(UNAME_M)),)
ARCH_FLAGS_x86_avx2   := -mavx2 -mfma -mf16c
ARCH_FLAGS_x86_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mfma -mf16c
ARCH_SRC := $(wildcard arch/scalar*.c arch/x86_*.c arch/cpu_*.c)
else ifneq ($(filter aarch64 arm64,$(UNAME_M)),)
ARCH_SRC := $(wildcard arch/scalar*.c arch/neon_*.c arch/cpu_*.c)
else
ARCH_SRC := $(wildcard arch/scalar*.c arch/cpu_*.c)
endif
ifneq ($(CROSS_ARCH),)
ARCH_SRC := $(wildcard arch/scalar*.c arch/$(CROSS_ARCH)_*.c arch/cpu_*.c)
endif

# arch/x86_avx512*.c get the AVX-512 flags, arch/x86_avx2*.c the AVX2 ones,
# so a backend may span several files
arch_flags = $(if $(filter x86_avx512%,$(1)),$(ARCH_FLAGS_x86_avx512),$(if $(filter x86_avx2%,$(1)),$(ARCH_FLAGS_x86_avx2),$(ARCH_FLAGS_$(basename $(1)))))

LIB_SRC     := $(wildcard core/*.c convert/*.c) $(ARCH_SRC)
APP_SRC     := $(wildcard apps/*.c)
SUPPORT_SRC := $(wildcard test/support/*.c)
TEST_SRC    := $(wildcard test/test_*.c)
TOOL_SRC    := $(wildcard test/tools/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB_OBJ     := $(call obj,$(LIB_SRC))
APP_OBJ     := $(call obj,$(APP_SRC))
SUPPORT_OBJ := $(call obj,$(SUPPORT_SRC))
TEST_BIN    := $(patsubst test/%.c,$(BUILD)/test/%,$(TEST_SRC))
TOOL_BIN    := $(patsubst test/tools/%.c,$(BUILD)/tools/%,$(TOOL_SRC))

ifeq ($(UNAME_S),Darwin)
SHLIB       := libdeepc.$(SOVER).dylib
SHLIB_FLAGS := -dynamiclib -install_name @rpath/$(SHLIB)
else
SHLIB       := libdeepc.so.$(SOVER)
SHLIB_FLAGS := -shared -Wl,-soname,$(SHLIB)
endif

CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

.PHONY: all lib cli tools tests test demo bench bench-tokenizer install clean check-cmocka cross-neon-test
all: lib cli tools

lib: $(BUILD)/libdeepc.a $(BUILD)/$(SHLIB)
cli: $(BUILD)/deepc
tools: $(TOOL_BIN)
tests: $(TEST_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(call arch_flags,$(notdir $<)) -c $< -o $@

$(BUILD)/libdeepc.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/$(SHLIB): $(LIB_OBJ)
	$(CC) $(SHLIB_FLAGS) $(LDSAN) -pthread -o $@ $^ $(LDLIBS)
	ln -sf $(SHLIB) $(BUILD)/libdeepc$(if $(filter Darwin,$(UNAME_S)),.dylib,.so)

$(BUILD)/deepc: $(APP_OBJ) $(BUILD)/libdeepc.a
	$(CC) $(LDSAN) -pthread -o $@ $(APP_OBJ) $(BUILD)/libdeepc.a $(LDLIBS)

$(BUILD)/tools/%: $(BUILD)/obj/test/tools/%.o $(SUPPORT_OBJ) $(BUILD)/libdeepc.a
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -pthread -o $@ $< $(SUPPORT_OBJ) $(BUILD)/libdeepc.a $(LDLIBS)

$(BUILD)/test/%: $(BUILD)/obj/test/%.o $(SUPPORT_OBJ) $(BUILD)/libdeepc.a
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -pthread -o $@ $< $(SUPPORT_OBJ) $(BUILD)/libdeepc.a $(CMOCKA_LIBS) $(LDLIBS)

$(BUILD)/obj/test/%.o: CPPFLAGS += -Itest/support

# Test objects need the CMocka header: make sure it exists first.
$(call obj,$(TEST_SRC)): | check-cmocka
check-cmocka:
	@sh test/ensure-cmocka.sh

# Runs every test binary from the repository root; fails if any fails.
test: all tests
	@BUILD=$(BUILD) sh test/run-tests.sh $(TEST_BIN)

# The main job on a built-in default: a small synthetic R1-Distill-Qwen-like
# checkpoint is generated, converted, and generated from.
demo: all
	@sh test/demo.sh $(BUILD)

# Benchmarks, never part of `make test`: synthetic checkpoints with real
# shapes are generated outside the repo (DEEPC_BENCH_DIR, default
# ~/.cache/deepc-bench), converted, and measured with `deepc bench`.
bench: all
	@sh test/bench.sh $(BUILD)

# Tokenizer encoding throughput on the vendored real tokenizers.
bench-tokenizer: $(BUILD)/tools/tokbench
	$(BUILD)/tools/tokbench test/data/tokenizers/deepseek-v3 test/data/tokenizers/qwen3 test/data/tokenizers/llama-3.1

# NEON backend, cross-compiled and run under qemu-user (no aarch64 machine
# needed; CI runs this). The library is built for aarch64 with $(CROSS_CC)
# into $(CROSS_BUILD)/ (CROSS_ARCH=neon: scalar + arch/neon_*.c), with the
# plain-C parity test test/neon_parity.c (no aarch64 CMocka needed), which
# then runs once per qemu CPU model: "model:1" if it has SDOT (dotprod),
# "model:0" if not, so both Q8_0 paths run. The native build is not touched.
CROSS_CC       ?= aarch64-linux-gnu-gcc
CROSS_BUILD    ?= build-aarch64
QEMU_AARCH64   ?= qemu-aarch64 -L /usr/aarch64-linux-gnu
NEON_QEMU_CPUS ?= cortex-a53:0 cortex-a76:1 max:1

cross-neon-test:
	$(MAKE) CC="$(CROSS_CC)" CROSS_ARCH=neon BUILD=$(CROSS_BUILD) SAN= $(CROSS_BUILD)/test/neon_parity
	@for m in $(NEON_QEMU_CPUS); do \
	    cpu=$${m%%:*}; dot=$${m##*:}; \
	    echo "== neon parity: qemu-aarch64 -cpu $$cpu (dotprod expected: $$dot) =="; \
	    $(QEMU_AARCH64) -cpu $$cpu $(CROSS_BUILD)/test/neon_parity --expect-dotprod=$$dot || exit 1; \
	done

# Plain C, no CMocka: its own rule instead of the test pattern rule.
$(BUILD)/test/neon_parity: $(BUILD)/obj/test/neon_parity.o $(BUILD)/libdeepc.a
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -pthread -o $@ $< $(BUILD)/libdeepc.a $(LDLIBS)

install: all
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 core/deepc.h $(DESTDIR)$(PREFIX)/include/deepc.h
	install -m 644 $(BUILD)/libdeepc.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/$(SHLIB) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(SHLIB) $(DESTDIR)$(PREFIX)/lib/libdeepc$(if $(filter Darwin,$(UNAME_S)),.dylib,.so)
	install -m 755 $(BUILD)/deepc $(DESTDIR)$(PREFIX)/bin/deepc
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' deepc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/deepc.pc

clean:
	rm -rf build build-san build-clang build-aarch64 build-aarch64-clang

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# keep test-support objects between builds (make would delete them as intermediates)
.SECONDARY:
