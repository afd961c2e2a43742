"""Harness for testing against a real Apache Kafka Connect 3.9.0 worker (test-only).

* :mod:`.artifacts` fetches, verifies and caches the jars; compiles the Java code.
* ``java/broker/MiniKafkaBroker.java``: single-node in-memory Kafka-protocol broker (127.0.0.1).
* ``java/plugin/``: a test-only source connector that fails on demand.
* :mod:`.cluster` starts the broker and distributed workers on free loopback ports.
* :mod:`.rest` drives a worker's REST API; :mod:`.probe` runs the sidecar.
* :mod:`.procs` stops exactly the processes it started, by PID.
* :mod:`.demo` is ``make demo``.

Imported as ``tools.realconnect`` from the repository root (as pytest and the other test helpers
do); ``python -m tools.realconnect.artifacts`` / ``python -m tools.realconnect.demo`` run the
setup and the demo. Needs only the standard library and httpx (no pytest).
"""
