"""On the real node: a model served from S3 (SeaweedFS started by scripts/object_stores.py on
the model store's address, which the node's pods reach), with the keys in a Secret that only
the fetcher init container sees, and a wrong key named in the ModelDeployment's status.

Written with the storage work, not yet run: the real node belongs to one session at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from modeldeploy import names
from tests.e2e.conftest import E2E, example_models
from tests.e2e.test_real_node import INFER, Model, namespace  # noqa: F401 (the fixture)
from tests.helpers.load import Load
from tests.helpers.object_stores import Stores, start_stores, stop_stores

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stores(e2e: E2E, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    process, found = start_stores(tmp_path_factory.mktemp("stores"), host=e2e.store.host)
    try:
        yield found
    finally:
        stop_stores(process)


def _s3_model(e2e: E2E, stores: Stores, ns: str, name: str, secret_key: str) -> Model:
    version = "1"
    data = example_models.model_path(e2e.store.directory, version).read_bytes()
    uri = stores.put_s3(f"e2e/{name}/model.joblib", data)
    s3 = stores.s3_env()
    e2e.cluster.kubectl("delete", "secret", name, "-n", ns, "--ignore-not-found")
    e2e.cluster.kubectl(
        "create", "secret", "generic", name, "-n", ns,
        f"--from-literal=AWS_ACCESS_KEY_ID={s3['AWS_ACCESS_KEY_ID']}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={secret_key}",
    )  # fmt: skip
    model = Model(e2e, ns, name)
    model.apply(
        version,
        model={
            "uri": uri,
            "envFrom": [{"secretRef": {"name": name}}],
            "env": [
                {"name": "AWS_ENDPOINT_URL", "value": s3["AWS_ENDPOINT_URL"]},
                {"name": "AWS_REGION", "value": s3["AWS_REGION"]},
            ],
        },
    )
    return model


def test_a_model_in_s3_is_fetched_by_the_init_container_and_served(
    e2e: E2E,
    namespace: str,  # noqa: F811
    stores: Stores,
) -> None:
    model = _s3_model(e2e, stores, namespace, "from-s3", stores.s3_env()["AWS_SECRET_ACCESS_KEY"])
    model.stable(1, timeout=240)
    pod = model.pods(1)[0]
    fetcher = pod["status"]["initContainerStatuses"][0]
    assert fetcher["name"] == names.CONTAINER_FETCHER
    assert fetcher["state"]["terminated"]["exitCode"] == 0
    server = next(c for c in pod["spec"]["containers"] if c["name"] == names.CONTAINER_SERVER)
    assert "envFrom" not in server
    with Load(model.url(), INFER, rate=20) as load:
        time.sleep(3)
    assert load.samples and not load.non_2xx() and load.connection_errors == 0


def test_a_wrong_key_is_named_in_the_status(
    e2e: E2E,
    namespace: str,  # noqa: F811
    stores: Stores,
) -> None:
    model = _s3_model(e2e, stores, namespace, "wrong-key", "not-the-secret")
    status = model.wait(
        "FetchFailed in status.message",
        lambda s: "FetchFailed" in (s.get("message") or ""),
        timeout=240,
    )
    assert "access denied" in status["message"], model.describe()
