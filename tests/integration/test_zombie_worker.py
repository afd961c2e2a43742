"""The second opinion on a lost Kafka (issue 12 item 3), on a real broker and a real 4.x worker.

A broker of its own with a second listener that advertises a proxy's port: the worker is
bootstrapped through that proxy (``tools.realconnect.tcpproxy``), so all its Kafka traffic goes
through it, while the sidecar's progress checks read the broker directly. Cutting the proxy
makes this worker a zombie: its /health names a stage waiting on Kafka while Kafka is fine for
everyone else; /ready says ``kafka_unreachable`` and, because the sidecar's own reads succeed,
/live fails after LIVE_GRACE. Stopping the broker itself loses Kafka for everyone: the sidecar's
reads fail too, and /live stays 200 however long it lasts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tools.realconnect.artifacts import DEFAULT_CONNECT
from tools.realconnect.cluster import Broker, ConnectCluster, Worker, free_port, start_broker
from tools.realconnect.probe import Probe
from tools.realconnect.session import RealConnect
from tools.realconnect.tcpproxy import TcpProxy
from tools.realconnect.wait import wait_until

pytestmark = pytest.mark.realkafka

SINK = "io.github.kafkaconnectprobe.testplugins.ControllableSinkConnector"
LIVE_GRACE = 10.0
SETTINGS = {
    "STARTUP_GRACE": "0",
    "LIVE_GRACE": str(LIVE_GRACE),
    "TIMEOUT": "11",  # /health's own budget is 10 s
    "MAX_AGE": "40",
    "PROGRESS_INTERVAL": "2",
    "NOT_CONSUMING_GRACE": "60",
}
# Kafka down for everyone: /live must stay 200 this long (far beyond LIVE_GRACE).
DOWN_SECONDS = 35.0


@dataclass
class Zombie:
    broker: Broker
    proxy: TcpProxy
    worker: Worker
    probe: Probe


@pytest.fixture(scope="module")
def zombie(realconnect: RealConnect) -> Iterator[Zombie]:
    proxy_port = free_port()
    broker = start_broker(
        realconnect.artifacts, realconnect.run, name="broker-zombie", proxied_port=proxy_port
    )
    assert broker.proxied is not None
    proxy = TcpProxy(
        "kafka-proxy", proxy_port, broker.proxied[0], realconnect.run.path / "kafka-proxy.log"
    ).start()
    cluster = ConnectCluster(
        realconnect.artifacts,
        broker,
        realconnect.run,
        "zombie",
        version=DEFAULT_CONNECT,
        rebalance_delay_ms=10_000,
        worker_overrides={"bootstrap.servers": f"127.0.0.1:{proxy_port}"},
    )
    probe: Probe | None = None
    try:
        [worker] = cluster.start_workers(1)
        topic = f"zombie-{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        worker.client.create("sink", {"connector.class": SINK, "topics": topic, "tasks.max": "1"})
        worker.client.wait_for_state("sink", "RUNNING", "RUNNING", task_count=1, timeout=60)
        probe = realconnect.probe(
            "zombie",
            worker,
            {
                "WORKER_ID": worker.worker_id,
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                **SETTINGS,
            },
        ).start()
        probe.wait_ready(True, timeout=60)
        yield Zombie(broker, proxy, worker, probe)
    finally:
        if probe is not None:
            probe.stop()
        cluster.stop(timeout=10)
        proxy.stop()
        broker.stop()


def _reads_kafka(probe: Probe) -> bool:
    return bool(probe.status().body["progress"]["kafka"]["up"])


def test_only_this_worker_lost_kafka_fails_live(realconnect: RealConnect, zombie: Zombie) -> None:
    wait_until(lambda: _reads_kafka(zombie.probe), timeout=30, what="the sidecar reads Kafka")
    assert zombie.probe.live().ok
    cut = time.monotonic()
    zombie.proxy.cut()
    ready = zombie.probe.wait_answer(
        "/ready", lambda a: "kafka_unreachable" in a.codes, what="kafka_unreachable", timeout=60
    )
    ready_after = time.monotonic() - cut
    assert ready.code == 503
    live = zombie.probe.wait_live(False, timeout=LIVE_GRACE + 40)
    live_after = time.monotonic() - cut
    assert live.codes[0] == "kafka_unreachable", live
    assert "zombie" in live.reasons[0]["message"]
    assert live_after - ready_after >= LIVE_GRACE - 1.5  # the grace was waited out
    assert _reads_kafka(zombie.probe)  # the second opinion: Kafka is fine from this pod
    realconnect.record("zombie_ready_detected_seconds", ready_after)
    realconnect.record("zombie_live_failed_seconds", live_after)

    # The cure is a restart; here, the network heals instead: the same worker recovers.
    zombie.proxy.start()
    zombie.probe.wait_live(True, timeout=60)
    zombie.probe.wait_ready(True, timeout=90)


def test_kafka_down_for_everyone_keeps_live(realconnect: RealConnect, zombie: Zombie) -> None:
    zombie.probe.wait_ready(True, timeout=60)
    lost = time.monotonic()
    zombie.broker.kill()
    detected: float | None = None
    while time.monotonic() - lost < DOWN_SECONDS:
        if detected is None and "kafka_unreachable" in zombie.probe.ready().codes:
            detected = time.monotonic() - lost
        live = zombie.probe.live()
        assert live.code == 200, f"/live {live} while Kafka is down for everyone"
        time.sleep(0.5)
    assert detected is not None, zombie.probe.ready()
    assert not _reads_kafka(zombie.probe)
    realconnect.record("kafka_down_all_ready_detected_seconds", detected)
    zombie.broker.start()
    zombie.probe.wait_ready(True, timeout=120)
    assert zombie.probe.live().ok
