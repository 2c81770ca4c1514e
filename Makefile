# Crest: nginx modules + C workers.  `make run` to run it, `make test` to test it.

SHELL        := /bin/bash
TOP          := $(abspath .)
BUILD        := $(TOP)/build
NGX_SRC      ?= /usr/share/nginx/src
NGX_BUILD    := $(BUILD)/nginx
ASAN_BUILD   := $(BUILD)/nginx-asan
MODULE       := $(BUILD)/modules/ngx_http_crest_module.so
ASAN_MODULE  := $(BUILD)/modules-asan/ngx_http_crest_module.so
NODE_STAMP   := tools/node_modules/.crest-installed-lock
BULLMQ_GEN   := $(BUILD)/gen/crest_bullmq_scripts.c

CC           ?= cc
PG_INC       := $(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
CFLAGS       ?= -O2 -g
WARN         := -Wall -Wextra -Werror
CREST_CFLAGS := $(CFLAGS) $(WARN) -std=gnu11 -D_GNU_SOURCE -Ishared -I$(PG_INC)
LIBS         := -lpq -lhiredis -ljansson -lcrypto -lmsgpackc -lm -lpthread

MODULE_SRCS  := config $(wildcard ngx_modules/*.c ngx_modules/*.h shared/*.c shared/*.h)
SHARED_SRCS  := $(wildcard shared/*.c)
WORKER_SRCS  := $(wildcard workers/*.c)
UNIT_SRCS    := $(wildcard t/unit/test_*.c)
UNIT_BINS    := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))

.PHONY: all modules workers unit jwt-tool deps run stop migrate test test-asan fuzz bench clean

all: modules workers

deps:
	@scripts/deps.sh

# --- nginx modules ---------------------------------------------------------
# Debian's nginx-dev ships the configure scripts but no .c files: configure a
# copy of that tree with Debian's own flags so the module is binary compatible.
modules: $(MODULE)

# config names build/gen/crest_bullmq_scripts.c, which must exist first.
$(NGX_BUILD)/objs/Makefile: $(NGX_SRC)/conf_flags config Makefile | $(BULLMQ_GEN)
	@rm -rf $(NGX_BUILD) && mkdir -p $(BUILD) && cp -r $(NGX_SRC) $(NGX_BUILD)
	source $(NGX_SRC)/conf_flags && cd $(NGX_BUILD) && \
	  ./configure "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(TOP) \
	    --with-cc-opt="$(WARN) -Wno-unused-parameter -D_GNU_SOURCE" >$(BUILD)/configure.log 2>&1 \
	  || { tail -30 $(BUILD)/configure.log; exit 1; }

# Installed by rename: overwriting a .so in place would corrupt a running nginx.
$(MODULE): $(NGX_BUILD)/objs/Makefile $(MODULE_SRCS) $(BULLMQ_GEN)
	$(MAKE) -s -C $(NGX_BUILD) -f objs/Makefile modules
	@mkdir -p $(dir $@) && cp $(NGX_BUILD)/objs/ngx_http_crest_pg_module.so $@.tmp && mv -f $@.tmp $@

# The same module under AddressSanitizer, for Debian's nginx with libasan
# preloaded (nginx itself cannot be rebuilt from nginx-dev).
$(ASAN_BUILD)/objs/Makefile: $(NGX_SRC)/conf_flags config Makefile | $(BULLMQ_GEN)
	@rm -rf $(ASAN_BUILD) && mkdir -p $(BUILD) && cp -r $(NGX_SRC) $(ASAN_BUILD)
	source $(NGX_SRC)/conf_flags && cd $(ASAN_BUILD) && \
	  ./configure "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(TOP) \
	    --with-cc-opt="$(WARN) -Wno-unused-parameter -D_GNU_SOURCE -fsanitize=address -fno-omit-frame-pointer" \
	    --with-ld-opt="-fsanitize=address" >$(BUILD)/configure-asan.log 2>&1 \
	  || { tail -30 $(BUILD)/configure-asan.log; exit 1; }

$(ASAN_MODULE): $(ASAN_BUILD)/objs/Makefile $(MODULE_SRCS) $(BULLMQ_GEN)
	$(MAKE) -s -C $(ASAN_BUILD) -f objs/Makefile modules
	@mkdir -p $(dir $@) && cp $(ASAN_BUILD)/objs/ngx_http_crest_pg_module.so $@.tmp && mv -f $@.tmp $@

# --- BullMQ's Lua scripts, generated from the pinned npm package ----------
# tools/node_modules is (re)installed when missing or older than the lock;
# the stamp is a copy of the lock it was installed from.  npm ci refuses a
# lock without other platforms' optional packages (as npm writes it here),
# hence npm install as a fallback; the generator checks the version.
# (NODE_STAMP and BULLMQ_GEN are defined at the top: the module rules use them)

$(NODE_STAMP): tools/package.json tools/package-lock.json
	cd tools && { npm ci --ignore-scripts --no-audit --no-fund >/dev/null 2>&1 \
	  || npm install --ignore-scripts --no-audit --no-fund --loglevel=error; }
	@cp tools/package-lock.json $@

$(BULLMQ_GEN): tools/gen-bullmq-scripts.js tools/bullmq-scripts.expected tools/package-lock.json $(NODE_STAMP)
	node tools/gen-bullmq-scripts.js $(BUILD)/gen

$(BUILD)/gen/crest_bullmq_scripts.h: $(BULLMQ_GEN)

# --- workers and unit tests ------------------------------------------------
workers: $(BUILD)/bin/crest-worker $(BUILD)/bin/crest-queue

WORKER_DEPS  := $(WORKER_SRCS) $(SHARED_SRCS) $(BULLMQ_GEN) $(wildcard workers/*.h shared/*.h)

$(BUILD)/bin/crest-worker: $(WORKER_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(CREST_CFLAGS) -Iworkers -I$(BUILD)/gen -o $@ $(WORKER_SRCS) $(SHARED_SRCS) $(BULLMQ_GEN) $(LIBS) -lcurl

# The queue CLI: the worker's sources but its own main().
$(BUILD)/bin/crest-queue: workers/cli/crest_queue.c $(WORKER_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(CREST_CFLAGS) -Iworkers -I$(BUILD)/gen -o $@ $< $(filter-out workers/main.c,$(WORKER_SRCS)) $(SHARED_SRCS) $(BULLMQ_GEN) $(LIBS) -lcurl

unit: $(UNIT_BINS) $(BUILD)/unit/jwt_tool

# A CLI over shared/crest_jwt.c that t/021-jwt-interop.t checks against PyJWT.
# The pattern rule below builds it; t/00-unit.t runs only test_* binaries.
jwt-tool: $(BUILD)/unit/jwt_tool

$(BUILD)/unit/%: t/unit/%.c $(SHARED_SRCS) $(wildcard shared/*.h t/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CREST_CFLAGS) -fsanitize=address,undefined -fno-omit-frame-pointer \
	  -It/unit -o $@ $< $(SHARED_SRCS) $(LIBS)

# --- running ---------------------------------------------------------------
run: deps all
	@scripts/run.sh start

stop:
	@scripts/run.sh stop

migrate:
	@scripts/migrate.sh

# --- tests -----------------------------------------------------------------
test: deps all unit
	prove -r -I t/lib t/

test-asan: deps $(ASAN_MODULE) workers unit
	CREST_TEST_ASAN=1 TEST_NGINX_LOAD_MODULES=$(ASAN_MODULE) prove -r -I t/lib t/

fuzz: deps
	@scripts/fuzz.sh

bench: deps all
	@bench/run.sh

clean:
	rm -rf $(BUILD)

# --- s3rver, the S3-compatible server of the storage tests (t/085-*.t) ----
# Pinned in t/s3/package-lock.json; installed like tools/ (stamp = the lock).
S3RVER_STAMP := t/s3/node_modules/.crest-installed-lock

.PHONY: s3rver
s3rver: $(S3RVER_STAMP)

$(S3RVER_STAMP): t/s3/package.json t/s3/package-lock.json | deps
	cd t/s3 && { npm ci --ignore-scripts --no-audit --no-fund >/dev/null 2>&1 \
	  || npm install --ignore-scripts --no-audit --no-fund --loglevel=error; }
	@cp t/s3/package-lock.json $@

test test-asan: $(S3RVER_STAMP)
