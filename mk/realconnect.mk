# Real Apache Kafka for tests and the demo (tools/realconnect/, tests/integration/): the official
# broker (4.4.0, KRaft) and Kafka Connect 4.3.1 / 3.9.2 / 3.6.2, resolved from Maven Central by
# Maven (tools/realconnect/maven/*/pom.xml) into ~/.cache/kafka-connect-probe/realconnect
# ($CONNECT_PROBE_REALCONNECT_CACHE) and ~/.m2. Needs Java 17 (a JDK: javac builds the test
# connector plugin once) and Maven; without them these targets say what to install.
# demo depends on install-dev, not install: `uv sync --no-dev` would remove the dev tools.

PROBE_PORT ?= 18083
CONNECT_PORT ?= 0

.PHONY: realconnect-setup demo test-realkafka lost-kafka

realconnect-setup: install-dev ## resolve the Kafka broker + Connect jars with Maven (cached), build the test plugin
	$(BIN)/python -m tools.realconnect.artifacts

demo: install-dev ## real Kafka broker + Connect 4.x worker + sidecar on 127.0.0.1:$(PROBE_PORT); Ctrl-C cleans up
	$(BIN)/python -m tools.realconnect.demo --probe-port $(PROBE_PORT) --connect-port $(CONNECT_PORT)

test-realkafka: install-dev ## only the tests against a real Kafka broker and Connect workers
	$(BIN)/pytest -m realkafka -q tests/integration

CONNECT_VERSION ?= 4.3.1
LOST_MODE ?= stop
lost-kafka: install-dev ## watch a worker + sidecar lose their broker (LOST_MODE=stop|kill, CONNECT_VERSION=)
	$(BIN)/python -m tools.realconnect.lostkafka --version $(CONNECT_VERSION) --mode $(LOST_MODE)
