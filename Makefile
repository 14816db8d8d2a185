# Two commands: `make demo` and `make test`. Both install missing system
# packages first (scripts/setup.sh, idempotent).
.PHONY: demo test setup build lint bench load

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

bench: setup
	cargo bench --bench hot_path

load: setup
	scripts/load.sh
