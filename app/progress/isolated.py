"""The Kafka client in a process of its own, so that its failures cannot take the sidecar down.

librdkafka is C: an internal assertion failure aborts whatever process it runs in (seen here on
a real broker that was killed and restarted under a reading sidecar:
``rd_kafka_enq_once_del_source_return: Assertion `eonce->refcnt > 0' failed``). In the sidecar's
own process that would end every probe answer, and with them the Connect worker whose probes
point here. So the reader (``app.progress.kafka.KafkaReader``) runs in one child process
(app/progress/child.py) spoken to over pipes: a crash or a hang there becomes a failed read — the
tasks read as ``unknown``, which never fails a probe — and the next read starts a new child. The
sidecar itself never loads librdkafka.
"""

import logging
import pickle
import select
import subprocess
import sys
from collections.abc import Sequence
from typing import Final

from app.progress.reading import KafkaUnavailable
from app.progress.rules import KafkaRead
from app.settings import Settings

logger = logging.getLogger("app.progress")

# The reader class, as "module:name", imported in the child only (the bench swaps in a fake).
KAFKA_READER = "app.progress.kafka:KafkaReader"
# Beyond a read's own deadline: the child's start (an interpreter and librdkafka) and the answer.
START_AND_RETURN_SECONDS: Final = 20.0


class IsolatedReader:
    """A ``Reader`` whose reads run in a child process (see the module doc). Blocking, like any
    reader: the progress loop calls it from its own thread."""

    def __init__(
        self,
        settings: Settings,
        factory: str | None = None,
        slack: float = START_AND_RETURN_SECONDS,
    ) -> None:
        self._settings = settings
        self._factory = factory or KAFKA_READER
        self._slack = slack
        self._child: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def read(self, groups: Sequence[str], timeout: float) -> KafkaRead:
        if not groups:
            return KafkaRead({}, {})
        child = self._child or self._start()
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            pickle.dump((list(groups), timeout), child.stdin)
            child.stdin.flush()
            ready, _, _ = select.select([child.stdout], [], [], timeout + self._slack)
            if not ready:
                self._discard()
                raise KafkaUnavailable(
                    f"the Kafka client's process did not answer within "
                    f"{timeout + self._slack:g}s; it was stopped, a new one reads next time"
                )
            answer = pickle.load(child.stdout)
        except (OSError, EOFError, pickle.UnpicklingError):
            code = self._discard()
            logger.error(
                "the Kafka client's process ended during a read (exit status %s; librdkafka may "
                "have aborted); a new one serves the next read",
                code,
            )
            raise KafkaUnavailable(
                f"the Kafka client's process ended during the read (exit status {code}); "
                "a new one reads next time"
            ) from None
        if isinstance(answer, KafkaUnavailable):
            raise answer
        if not isinstance(answer, KafkaRead):
            self._discard()
            raise KafkaUnavailable("the Kafka client's process answered something unexpected")
        return answer

    def close(self) -> None:
        self._discard()

    def _start(self) -> "subprocess.Popen[bytes]":
        child = subprocess.Popen(
            [sys.executable, "-m", "app.progress.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert child.stdin is not None
        # Settings travel over the pipe, never on the command line (ps would show them).
        pickle.dump((list(sys.path), self._factory, self._settings), child.stdin)
        child.stdin.flush()
        self._child = child
        return child

    def _discard(self) -> int | None:
        """Stop the child (killed, not asked: it may be hung in C) and forget it."""
        child, self._child = self._child, None
        if child is None:
            return None
        self.restarts += 1
        if child.poll() is None:
            child.kill()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
        return child.wait()
