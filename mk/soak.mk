# Soak (issue 6): a real connect-probe under >= 200 probes/s for SOAK_SECONDS while a fake Connect
# flaps and injects every upstream fault; checks RSS growth, fds, errors and the log.
# Not part of `make test`. Writes bench/soak-results.md; exits non-zero when a criterion fails.

SOAK_SECONDS ?= 600
SOAK_RATE ?= 250

.PHONY: soak soak-smoke

soak: install-dev ## 10-minute soak under probe load and injected faults; writes bench/soak-results.md
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS) --rate $(SOAK_RATE)

soak-smoke: install-dev ## a 30-second soak (figures mean little); writes bench/out/soak-smoke.md
	@mkdir -p bench/out
	$(BIN)/python bench/soak.py --seconds 30 --rate $(SOAK_RATE) --out bench/out/soak-smoke.md
