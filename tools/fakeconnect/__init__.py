"""One fake Kafka Connect REST API, with the front ends the test tiers and the bench need.

- ``bodies``: the one builder of Connect's JSON bodies (stdlib only).
- ``model``: ``FakeConnect``, connectors and their states plus misbehaviour knobs, answered through
  an ``httpx.MockTransport`` (in-process tests).
- ``threaded``: the same model on a real socket of 127.0.0.1 (tests that run real processes).
- ``faulty``: a raw asyncio HTTP/1.1 server with fault switches (fault injection, the soak).
- ``fast``: every body rendered once, for the benchmark and the deploy checks; a CLI
  (``python -m tools.fakeconnect.fast --help``), stdlib only.

This package imports nothing itself, so the stdlib-only front ends run under any Python.
"""
