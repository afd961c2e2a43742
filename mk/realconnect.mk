# Real Kafka Connect 3.9.0 worker for tests and the demo (tests/realconnect/, tests/integration/).
# Jars are cached in ~/.cache/kafka-connect-probe/realconnect ($CONNECT_PROBE_REALCONNECT_CACHE).
# Needs Java 17 (a JDK: javac builds the test broker and plugin once).
# demo depends on install-dev, not install: `uv sync --no-dev` would remove the dev tools.

PROBE_PORT ?= 18083
CONNECT_PORT ?= 0

.PHONY: realconnect-setup demo test-realconnect

realconnect-setup: install-dev ## fetch + verify the Kafka Connect jars (cached), build the test broker and plugin
	$(BIN)/python -m tests.realconnect.artifacts

demo: install-dev ## real Connect worker + broker + sidecar on 127.0.0.1:$(PROBE_PORT); Ctrl-C cleans up
	$(BIN)/python -m tests.realconnect.demo --probe-port $(PROBE_PORT) --connect-port $(CONNECT_PORT)

test-realconnect: install-dev ## only the tests against real Kafka Connect workers
	$(BIN)/pytest -m realconnect -q tests/integration
