"""The Kafka client's own process, ``python -m app.progress.child`` (see app/progress/isolated).

It reads pickled messages on stdin — first ``(sys.path, factory, settings)``, then ``(groups,
timeout)`` per read — and answers each read on stdout with a pickled ``KafkaRead`` or
``KafkaUnavailable``. It logs to stderr (the container's log) and ends when stdin closes, i.e.
when the sidecar ends or lets it go. Nothing but the reader is imported here.
"""

import importlib
import logging
import pickle
import signal
import sys
from typing import BinaryIO

from app.progress.reading import KafkaUnavailable, Reader


def serve(requests: BinaryIO, answers: BinaryIO) -> int:
    path, factory, settings = pickle.load(requests)
    sys.path[:0] = [entry for entry in path if entry not in sys.path]
    module, _, name = factory.partition(":")
    reader: Reader = getattr(importlib.import_module(module), name)(settings)
    while True:
        try:
            groups, timeout = pickle.load(requests)
        except EOFError:
            return 0  # the sidecar let this process go
        try:
            answer: object = reader.read(groups, timeout)
        except KafkaUnavailable as exc:
            answer = exc
        except Exception as exc:  # a bug in a read must not end the process
            logging.getLogger("app.progress").exception("Kafka read failed")
            answer = KafkaUnavailable(f"the Kafka read failed ({type(exc).__name__})")
        pickle.dump(answer, answers)
        answers.flush()


def main() -> int:
    # Ctrl-C and SIGTERM are the sidecar's to handle; this process ends when stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)-7s %(name)s (kafka client): %(message)s",
    )
    return serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
