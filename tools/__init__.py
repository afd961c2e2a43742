"""Runnable development tools: the fake Kafka Connect, the fake clock and the process helpers that
tests, the benchmark and the deploy checks share. Not part of the shipped package (``app``)."""
