"""Whether an unhealthy ``GET /health`` answer says the worker is waiting on Kafka.

Connect ≥ 3.9 (KIP-1017) answers an unhealthy ``/health`` with what its herder thread is stuck in:
"... The worker is currently <stage>, which began at <time>." Measured on real workers (3.9.2 and
4.3.1) with their broker frozen or killed: within about 10 s the herder blocks in one of the stages
below, all of them waits on Kafka (internal topics, the group coordinator), while its cached
connector statuses keep saying RUNNING. The other stages (starting/stopping one connector,
generating task configs, validating) wait on connector code, not on Kafka.

"stopping N connectors and M tasks" is the revocation of the whole assignment: measured on 4.3.1,
it follows "Broker coordinator was unreachable for 3000ms. Revoking previous assignment" and lasted
over 17 s with the broker killed, although every task's graceful stop had been given up after
``task.shutdown.graceful.timeout.ms`` (5 s): what holds the herder then is Kafka, not connector
code, which Connect stops waiting for after that timeout.
"""

import re

_STAGE = re.compile(r"The worker is currently (.+?)(?:, which began at |\.?$)", re.DOTALL)
# Stage texts of DistributedHerder (3.9.x and 4.x) in which the herder thread waits on Kafka.
_KAFKA_STAGES = re.compile(
    r"^(?:(?:initializing and )?reading to the end of"  # internal topics / the config topic
    r"|ensuring membership in the cluster"
    r"|stopping \d+ (?:connectors )?and \d+ tasks"
    r"|polling the group coordinator"
    r"|flushing updates to the status topic"
    r"|reclaiming write privileges for the config topic"
    r"|writing )"  # a config / a task count record / a session key / ... to the config topic
)


def kafka_stage(message: str) -> str | None:
    """The stage named in an unhealthy ``/health`` message when it is a wait on Kafka, else None."""
    match = _STAGE.search(message)
    if match is None:
        return None
    stage = match.group(1).strip()
    return stage if _KAFKA_STAGES.match(stage) else None
