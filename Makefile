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

.PHONY: all lib cli tools tests test demo bench install clean check-cmocka
all: lib cli tools

lib: $(BUILD)/libdeepc.a $(BUILD)/$(SHLIB)
cli: $(BUILD)/deepc
tools: $(TOOL_BIN)
tests: $(TEST_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(ARCH_FLAGS_$(basename $(notdir $<))) -c $< -o $@

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

install: all
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 core/deepc.h $(DESTDIR)$(PREFIX)/include/deepc.h
	install -m 644 $(BUILD)/libdeepc.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/$(SHLIB) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(SHLIB) $(DESTDIR)$(PREFIX)/lib/libdeepc$(if $(filter Darwin,$(UNAME_S)),.dylib,.so)
	install -m 755 $(BUILD)/deepc $(DESTDIR)$(PREFIX)/bin/deepc
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' deepc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/deepc.pc

clean:
	rm -rf build build-san build-clang

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
