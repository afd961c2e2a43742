# Benchmark (issue 7): the sidecar side by side with a bare FastAPI app and the classic exec probe.
# See bench/README.md. Extra driver flags: make bench BENCH_ARGS="--reps 9 --seconds 10".

BENCH_ARGS ?=
# root installs directly; anyone else goes through sudo.
BENCH_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: bench bench-smoke bench-tools bench-lint

bench-tools: ## install the bench's load generator and exec-probe tools (wrk, curl) if missing
	@missing=""; \
	for tool in wrk curl; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(BENCH_SUDO) apt-get update -qq && $(BENCH_SUDO) apt-get install -y -qq $$missing; \
	fi

bench: install-dev bench-tools ## full benchmark, several minutes; writes bench/results.md
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-smoke: install-dev ## seconds-long run of the bench machinery (no wrk); numbers mean nothing
	$(BIN)/python bench/run.py --smoke $(BENCH_ARGS)

BENCH_PY := bench/run.py tools/fakeconnect/fast.py bench/bare_app.py bench/exec_probe.py \
	bench/progress_cost.py bench/progress_sidecar.py \
	tests/test_bench_smoke.py

bench-lint: install-dev ## ruff + mypy --strict on the benchmark's files
	$(BIN)/ruff check $(BENCH_PY)
	$(BIN)/ruff format --check $(BENCH_PY)
	$(BIN)/mypy --strict $(BENCH_PY)
