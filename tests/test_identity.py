"""Worker-id detection for the forms platforms advertise (app/identity.py).

- a plain StatefulSet (deploy/): ``rest.advertised.host.name`` = the pod IP;
- Confluent for Kubernetes: the pod's full FQDN, ``connect-0.connect.<ns>.svc.cluster.local``;
- Strimzi: ``hostname -f`` cut to four labels, ``<pod>.<service>.<ns>.svc``.

The sidecar sees its host name and FQDN (``local_host_names``); the tests hand them in.
"""

import pytest

from app.identity import detect_identity, name_forms
from tools.fakeconnect.bodies import status
from tools.fakeconnect.model import FakeConnect
from tools.sidecar import Sidecar

CFK_FQDN = "connect-0.connect.confluent.svc.cluster.local"
STRIMZI_FQDN = "my-connect-connect-0.my-connect-connect.kafka.svc.cluster.local"
STRIMZI_ID = "my-connect-connect-0.my-connect-connect.kafka.svc:8083"
# What a pod sees: its short host name, its FQDN (from /etc/hosts) and its address.
CFK_NAMES = ("connect-0", CFK_FQDN, "10.1.2.3")
STRIMZI_NAMES = ("my-connect-connect-0", STRIMZI_FQDN, "10.1.2.4")


def test_name_forms_cut_a_pod_fqdn_to_four_labels() -> None:
    assert name_forms(CFK_FQDN) == [CFK_FQDN, "connect-0.connect.confluent.svc"]
    # Another cluster domain: the cut does not depend on "cluster.local".
    assert name_forms("c-0.c.ns.svc.k8s.example.com.") == [
        "c-0.c.ns.svc.k8s.example.com",
        "c-0.c.ns.svc",
    ]


@pytest.mark.parametrize(
    "host", ["connect-0", "connect-0.connect", "c-0.c.ns.svc", "10.1.2.3", "fd00::7", "localhost"]
)
def test_name_forms_keep_short_names_and_addresses(host: str) -> None:
    assert name_forms(host) == [host]


def test_candidates_cover_pod_ip_full_fqdn_and_strimzi_cut() -> None:
    identity = detect_identity(8083, "10.1.2.3", CFK_NAMES)
    assert identity.ordered[0] == "10.1.2.3:8083"  # POD_IP first: deploy/ advertises it
    for worker_id in (
        "10.1.2.3:8083",
        "connect-0:8083",
        "connect-0.connect.confluent.svc.cluster.local:8083",  # CFK
        "connect-0.connect.confluent.svc:8083",  # Strimzi's cut of the same FQDN
        "CONNECT-0.Connect.Confluent.SVC.cluster.local:8083",  # host names are case-insensitive
    ):
        assert identity.matches(worker_id), worker_id


@pytest.mark.parametrize(
    "other",
    [
        "connect-1.connect.confluent.svc.cluster.local:8083",  # the next pod
        "connect-1.connect.confluent.svc:8083",
        "connect-0.connect.confluent:8083",  # three labels: no platform advertises that
        "connect-0.connect.confluent.svc.cluster.local:9093",  # another port
        "connect-0.connect.other-ns.svc:8083",
        "10.1.2.30:8083",
    ],
)
def test_near_misses_are_not_this_worker(other: str) -> None:
    assert not detect_identity(8083, "10.1.2.3", CFK_NAMES).matches(other)


def fake_with_failed_task(worker_id: str, other: str) -> FakeConnect:
    fake = FakeConnect()
    fake.add(status("orders-sink", worker=other, tasks=[("FAILED", worker_id)]))
    fake.add(status("orders-source", worker=other, tasks=[("RUNNING", other)]))
    return fake


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("host_names", "worker_id", "other"),
    [
        pytest.param(
            CFK_NAMES,
            f"{CFK_FQDN}:8083",
            "connect-1.connect.confluent.svc.cluster.local:8083",
            id="cfk-full-fqdn",
        ),
        pytest.param(
            STRIMZI_NAMES,
            STRIMZI_ID,
            "my-connect-connect-1.my-connect-connect.kafka.svc:8083",
            id="strimzi-four-labels",
        ),
    ],
)
async def test_sidecar_judges_its_own_tasks_in_the_platform_form(
    host_names: tuple[str, ...], worker_id: str, other: str
) -> None:
    """With no WORKER_ID and no POD_IP, the sidecar finds its tasks by name, and only its own."""
    async with Sidecar(fake_with_failed_task(worker_id, other), host_names=host_names) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503, body
        assert [reason["worker_id"] for reason in body["reasons"]] == [worker_id]
        assert sidecar.status()["identity"]["matched"] == [worker_id]
    # The same cluster seen from the next pod: the FAILED task is not its own.
    async with Sidecar(fake_with_failed_task(other, worker_id), host_names=host_names) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200
