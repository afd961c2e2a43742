"""Progress checks for sink tasks (issue 14): is a RUNNING sink task on this worker consuming?

Opt-in with ``CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS``. Modules, one job each:

* ``windows``  — STALL_WINDOWS / PROGRESS_EXCLUDE parsing (pure, no Kafka client);
* ``config``   — the settings the progress checks read, pre-computed once;
* ``rules``    — per-task verdicts over a sliding window, with an injected clock (pure);
* ``targets``  — which sink tasks run on this worker, and their consumer group ids;
* ``kafka``    — the Kafka reader (confluent-kafka, imported only when enabled), off the loop;
* ``loop``     — the progress loop: read, judge, publish, restart if asked;
* ``verdicts`` — how progress verdicts amend /ready and /live; ``metrics`` — its series;
* ``wiring``   — starts it all from the app's lifespan, or nothing when disabled.
"""
