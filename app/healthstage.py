"""Whether an unhealthy ``GET /health`` answer says the worker is waiting on Kafka.

Connect ≥ 3.9 (KIP-1017) answers an unhealthy ``/health`` with what its herder thread is stuck in:
"... The worker is currently <stage>, which began at <time>." Measured on real workers (3.9.2 and
4.3.1) with their broker frozen or killed: within about 10 s the herder blocks in one of the stages
below, all of them waits on Kafka (internal topics, the group coordinator), while its cached
connector statuses keep saying RUNNING. The other stages (starting/stopping a connector,
generating task configs, validating) wait on connector code, not on Kafka.
"""

import re

_STAGE = re.compile(r"The worker is currently (.+?)(?:, which began at |\.?$)", re.DOTALL)
# Stage texts of DistributedHerder (3.9.x and 4.x) in which the herder thread waits on Kafka.
_KAFKA_STAGES = re.compile(
    r"^(?:(?:initializing and )?reading to the end of"  # internal topics / the config topic
    r"|ensuring membership in the cluster"
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
