"""Kafka Connect's connector and task states (``AbstractStatus.State``) and how we group them."""

RUNNING = "RUNNING"
UNASSIGNED = "UNASSIGNED"
RESTARTING = "RESTARTING"
PAUSED = "PAUSED"
FAILED = "FAILED"
STOPPED = "STOPPED"
DESTROYED = "DESTROYED"

KNOWN_STATES: frozenset[str] = frozenset(
    {UNASSIGNED, RUNNING, PAUSED, FAILED, DESTROYED, RESTARTING, STOPPED}
)

# States an object passes through on its way back to RUNNING (rebalance, restart): tolerated for a
# grace period, because counting them at once would make every rebalance flap readiness.
TRANSIENT_STATES: frozenset[str] = frozenset({UNASSIGNED, RESTARTING})
