"""What one test session (or the demo) shares: artifacts, log directory, broker, measurements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tools.realconnect.artifacts import Artifacts
from tools.realconnect.cluster import Broker, ConnectCluster, RunDir, Worker
from tools.realconnect.probe import Probe


@dataclass
class RealConnect:
    """The harness of a session: artifacts, run directory, shared broker, measurements."""

    artifacts: Artifacts
    run: RunDir
    broker: Broker
    probe_bin: str
    failed: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    _clusters: set[str] = field(default_factory=set)

    def cluster(
        self,
        name: str,
        *,
        version: str | None = None,
        broker: Broker | None = None,
        rebalance_delay_ms: int | None = None,
    ) -> ConnectCluster:
        """A new Connect group (unique ``name``) of Connect ``version`` (default: the newest)
        on the shared broker (or ``broker``)."""
        if name in self._clusters:
            raise ValueError(f"cluster name {name!r} used twice")
        self._clusters.add(name)
        return ConnectCluster(
            self.artifacts,
            broker or self.broker,
            self.run,
            name,
            version=version,
            rebalance_delay_ms=rebalance_delay_ms,
        )

    def probe(self, name: str, worker: Worker, settings: Mapping[str, str] | None = None) -> Probe:
        """A sidecar (not started) polling ``worker``; its log in the run directory."""
        log = self.run.sub("probes") / f"{name}.log"
        return Probe(name, worker.url, log, settings=settings, executable=self.probe_bin)

    def record(self, name: str, value: float) -> None:
        """Keeps the largest value seen under ``name`` (printed at the end of the session)."""
        self.metrics[name] = max(value, self.metrics.get(name, 0.0))

    def record_rss(self, label: str, rss_kib: int | None) -> None:
        if rss_kib is not None:
            self.record(f"rss_mib_{label}", rss_kib / 1024)
