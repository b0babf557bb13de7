# onemap: the two commands.
#   make run   build, generate the demo district if absent, serve it on http://127.0.0.1:8080
#   make test  formatting, lints and every test
CARGO ?= cargo
STORE ?= data/onemap.gpkg
BIND  ?= 127.0.0.1:8080
SCALE ?= district

.PHONY: run build toolchain demo test lint bench clean-demo

run: build
	@test -f $(STORE) || ./target/release/onemap demo --store $(STORE) --scale $(SCALE)
	./target/release/onemap serve --store $(STORE) --bind $(BIND) --web web

build: toolchain
	$(CARGO) build --release --locked

# Rust comes from rustup; it is the one thing this Makefile cannot install.
toolchain:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs) and rerun"; exit 1; }

demo: build
	./target/release/onemap demo --store $(STORE) --scale $(SCALE) --force

test: toolchain lint
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

bench:
	$(CARGO) bench --bench assign
	$(CARGO) bench --bench load
	ONEMAP_BENCH_SCALE=city $(CARGO) bench --bench load

clean-demo:
	rm -f $(STORE) $(STORE)-wal $(STORE)-shm
