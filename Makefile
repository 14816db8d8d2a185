# Two commands: `make demo` and `make test`. Both install missing system
# packages first (scripts/setup.sh, idempotent).
.PHONY: demo test setup build lint bench load fuzz

setup:
	@scripts/setup.sh

build: setup
	cargo build --all-targets

demo: setup
	scripts/demo.sh

# Uses the Redis on 127.0.0.1:6379, or starts one on a free port.
test: setup
	@REDIS_URL="$${REDIS_URL:-$$(scripts/ensure-redis.sh)}"; export REDIS_URL; \
	echo "make test: REDIS_URL=$$REDIS_URL"; \
	scripts/pyenv.sh >/dev/null && \
	cargo test --all-targets --no-fail-fast

lint: setup
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

# The request path against nginx and a bare pingora proxy, side by side,
# written to BENCHMARKS.md (scripts/bench.sh says how), then the criterion
# micro-benchmarks of the hot path (BENCH_SKIP_MICRO=1 skips them).
bench: setup
	scripts/bench.sh
	@[ -n "$${BENCH_SKIP_MICRO:-}" ] || cargo bench --bench hot_path

load: setup
	scripts/load.sh

# Fuzzing (fuzz/README.md): every cargo-fuzz target for FUZZ_TIME seconds
# each, one after another, then a timed replay of each corpus. Not part of
# `make test`. Installs cargo-fuzz if missing; stable Rust via RUSTC_BOOTSTRAP.
FUZZ_TIME ?= 60
fuzz: setup
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	FUZZ_TIME=$(FUZZ_TIME) RUSTC_BOOTSTRAP=1 fuzz/run.sh
