"""The Kafka client in a process of its own, so that its failures cannot take the sidecar down.

librdkafka is C: an internal assertion failure aborts the whole process (seen here on a real broker
that was killed and restarted: ``rd_kafka_enq_once_del_source_return: Assertion `eonce->refcnt >
0' failed``). In the sidecar's own process that would end every probe answer, and with them the
Connect worker whose probes point here. So the reader (``app.progress.kafka.KafkaReader``) runs
in one child process, started with ``spawn`` (nothing of the parent's event loop or threads is
copied): a crash or a hang there becomes a failed read — the tasks read as ``unknown``, which never
fails a probe — and the next read starts a fresh child. The parent never loads librdkafka.
"""

import concurrent.futures
import importlib
import logging
import multiprocessing
import signal
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Final, Protocol

from app.progress.reading import KafkaUnavailable, Reader
from app.progress.rules import KafkaRead
from app.settings import Settings

logger = logging.getLogger("app.progress")

# The reader class, as "module:name", imported in the child only (the bench swaps in a fake).
KAFKA_READER = "app.progress.kafka:KafkaReader"
# Beyond a read's own deadline: the child's start (an interpreter and librdkafka) and the answer.
START_AND_RETURN_SECONDS: Final = 20.0

_reader: Reader | None = None  # in the child: the one reader it serves


class _ReaderClass(Protocol):
    def __call__(self, settings: Settings) -> Reader: ...


def _start_child(factory: str, settings: Settings) -> None:
    """In the child: build the reader. Ctrl-C and SIGTERM are the parent's to handle."""
    global _reader
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    module, _, name = factory.partition(":")
    reader_class: _ReaderClass = getattr(importlib.import_module(module), name)
    _reader = reader_class(settings)


def _read_in_child(groups: Sequence[str], timeout: float) -> KafkaRead:
    assert _reader is not None
    return _reader.read(groups, timeout)


class IsolatedReader:
    """A ``Reader`` whose reads run in a child process (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        factory: str | None = None,
        slack: float = START_AND_RETURN_SECONDS,
    ) -> None:
        self._settings = settings
        self._factory = factory or KAFKA_READER
        self._slack = slack
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.restarts = 0

    def read(self, groups: Sequence[str], timeout: float) -> KafkaRead:
        if not groups:
            return KafkaRead({}, {})
        pool = self._pool or self._start()
        future = pool.submit(_read_in_child, list(groups), timeout)
        try:
            return future.result(timeout + self._slack)
        except BrokenProcessPool:
            self._discard()
            logger.error(
                "the Kafka client's process ended during a read (librdkafka may have aborted); "
                "a new one serves the next read"
            )
            raise KafkaUnavailable(
                "the Kafka client's process ended during the read; a new one reads next time"
            ) from None
        except concurrent.futures.TimeoutError:
            self._discard()
            raise KafkaUnavailable(
                f"the Kafka client's process did not answer within {timeout + self._slack:g}s; "
                "it was stopped, a new one reads next time"
            ) from None

    def close(self) -> None:
        self._discard()

    def _start(self) -> concurrent.futures.ProcessPoolExecutor:
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_child,
            initargs=(self._factory, self._settings),
        )
        return self._pool

    def _discard(self) -> None:
        """Stop the child (killed, not asked: it may be hung in C) and forget the pool."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        self.restarts += 1
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
