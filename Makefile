# onemap: the two commands.
#   make run   build, generate the demo district if absent, serve it on http://127.0.0.1:8080
#              (make run REPLAY=2: also replay the demo's work orders, 2 per second, live;
#              the replay waits for the server's /readyz, however long the store takes to load)
#   make test  formatting, lints and every test (Rust, then the browser tests in web/)
CARGO ?= cargo
STORE ?= data/onemap.gpkg
BIND  ?= 127.0.0.1:8080
SCALE ?= district
REPLAY ?=

.PHONY: run build toolchain web-deps demo test web-test lint bench clean-demo

run: build web-deps
	@test -f $(STORE) || ./target/release/onemap demo --store $(STORE) --scale $(SCALE)
	@test -f $(STORE).accounts.txt || echo "note: $(STORE) has no demo accounts file (made before sign-in existed?): run 'make demo' to regenerate it, or add an account with './target/release/onemap user add NAME --role admin --store $(STORE)'"
	@if [ -n "$(REPLAY)" ]; then \
		./target/release/onemap replay --store $(STORE) --url http://$(BIND) --rate $(REPLAY) --wait 600 & \
	fi; \
	./target/release/onemap serve --store $(STORE) --bind $(BIND) --web web --styles styles

build: toolchain
	$(CARGO) build --release --locked

# The web app's libraries (MapLibre) from npm, pinned by web/package-lock.json.
web-deps:
	@command -v npm >/dev/null || { echo "npm not found: install Node.js (apt-get install nodejs npm)"; exit 1; }
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || { echo "Node.js $$(node --version) is too old: the web app's tests (playwright-core) need Node.js >= 20"; exit 1; }
	@test -d web/node_modules/maplibre-gl || (cd web && npm ci --no-audit --no-fund)

# Rust comes from rustup; it is the one thing this Makefile cannot install.
toolchain:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs) and rerun"; exit 1; }

demo: build
	./target/release/onemap demo --store $(STORE) --scale $(SCALE) --force

test: toolchain lint
	$(CARGO) test --locked
	$(MAKE) web-test

# Browser tests: Debian's chromium driven by playwright-core, against the
# debug binary `cargo test` just built. Outside CI a machine without
# chromium skips them, saying so; in CI (.ci/run installs it) they must run.
web-test: web-deps
	$(CARGO) build --locked --bin onemap
	@if [ -x /usr/bin/chromium ] || [ -n "$$CI" ]; then \
		cd web && ONEMAP_BIN=../target/debug/onemap node --test tests/; \
	else \
		echo "SKIPPED: browser tests need /usr/bin/chromium (apt-get install chromium fonts-noto-cjk)"; \
	fi

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

bench:
	$(CARGO) bench --bench assign
	$(CARGO) bench --bench load
	$(CARGO) bench --bench tiles
	ONEMAP_BENCH_SCALE=city $(CARGO) bench --bench load
	$(CARGO) bench --bench live_soak
	$(CARGO) bench --bench replication

clean-demo:
	rm -f $(STORE) $(STORE)-wal $(STORE)-shm
