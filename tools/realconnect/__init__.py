"""Real Apache Kafka on this machine: a broker and Kafka Connect workers, for tests and the demo.

* :mod:`.artifacts` resolves the official jars from Maven Central with Maven (``maven/*/pom.xml``:
  broker 4.4.0, Connect 4.3.1 / 3.9.2 / 3.6.2), caches and verifies them, builds the test plugin.
* ``java/plugin/``: a test-only source connector that fails on demand.
* :mod:`.cluster` starts a single-node KRaft broker and distributed workers on free loopback ports.
* :mod:`.rest` drives a worker's REST API; :mod:`.probe` runs the sidecar.
* :mod:`.procs` stops exactly the processes it started, by PID.
* :mod:`.demo` is ``make demo``; :mod:`.lostkafka` is ``make lost-kafka``.

Imported as ``tools.realconnect`` from the repository root;
``python -m tools.realconnect.artifacts`` / ``python -m tools.realconnect.demo`` run the setup and
the demo. Needs only the standard library and httpx (no pytest).
"""
