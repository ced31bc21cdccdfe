"""A server with a reference profile counts served rows per bin: traffic like the training data
scores near zero against the profile, shifted traffic far above the 0.25 'major shift' line;
a profile for another model keeps the server from becoming ready."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from modeldeploy_serving.drift import PREDICTION
from modeldeploy_serving.monitor.psi import drift_score
from modeldeploy_serving.profile import build_profile
from tests.serving import models
from tests.serving.models import SavedModel
from tests.serving.process import ServerProcess


def write_profile(saved: SavedModel, directory: Path, data: np.ndarray) -> tuple[Path, str]:
    raw = orjson.dumps(build_profile(data, saved.estimator))
    path = directory / f"{saved.path.stem}.profile.json"
    path.write_bytes(raw)
    return path, hashlib.sha256(raw).hexdigest()


def distributions(server: ServerProcess, series: str) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for name, value in server.metrics().items():
        if name.startswith(series + "{"):
            labels = dict(part.split("=", 1) for part in name[len(series) + 1 : -1].split(","))
            out.setdefault(labels["feature"].strip('"'), {})[int(labels["bin"].strip('"'))] = value
    return out


def scores(before: dict[str, dict[int, float]], server: ServerProcess) -> dict[str, float]:
    after = distributions(server, "modeldeploy_drift_rows_total")
    reference = distributions(server, "modeldeploy_drift_reference_share")
    return {
        name: drift_score(
            [after[name][i] - before.get(name, {}).get(i, 0.0) for i in sorted(after[name])],
            [reference[name][i] for i in sorted(reference[name])],
        )
        for name in after
    }


@pytest.fixture(scope="module")
def drift_server(
    trained: dict[str, SavedModel],
    launch: Callable[..., ServerProcess],
    tmp_path_factory: pytest.TempPathFactory,
) -> ServerProcess:
    saved = trained["classifier-joblib"]
    features, _ = models._classification()
    path, sha = write_profile(saved, tmp_path_factory.mktemp("profile"), features)
    server = launch(saved, "--profile-uri", str(path), "--profile-sha256", sha, name="iris")
    return server.wait_ready()


def test_reference_traffic_scores_low_and_drifted_traffic_high(drift_server: ServerProcess) -> None:
    features, _ = models._classification()
    before = distributions(drift_server, "modeldeploy_drift_rows_total")
    for chunk in np.array_split(features, 10):
        assert drift_server.infer(chunk.tolist()).status == 200
    calm = scores(before, drift_server)
    assert set(calm) == {"0", "1", "2", "3", "4", "5", PREDICTION}
    assert max(calm.values()) < 0.1, calm

    before = distributions(drift_server, "modeldeploy_drift_rows_total")
    for chunk in np.array_split(features + 3.0, 10):
        assert drift_server.infer(chunk.tolist()).status == 200
    shifted = scores(before, drift_server)
    assert min(shifted[str(i)] for i in range(6)) > 1.0, shifted


def test_rows_are_counted_once_per_feature(drift_server: ServerProcess) -> None:
    before = distributions(drift_server, "modeldeploy_drift_rows_total")
    assert drift_server.infer(models.sample_rows(7).tolist()).status == 200
    after = distributions(drift_server, "modeldeploy_drift_rows_total")
    for name in after:
        added = sum(after[name].values()) - sum(before.get(name, {}).values())
        assert added == 7, name


def test_without_profile_no_drift_series(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    server = launch(trained["classifier-joblib"], name="iris").wait_ready()
    assert server.infer(models.sample_rows(2).tolist()).status == 200
    assert not any("drift" in name for name in server.metrics())


def test_a_profile_for_another_model_is_refused(
    trained: dict[str, SavedModel], launch: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    saved = trained["classifier-joblib"]
    raw = orjson.dumps(
        {
            "version": 1,
            "rows": 1,
            "features": [{"name": "x", "kind": "numeric", "edges": [], "frequencies": [1.0]}],
            "prediction": None,
        }
    )
    profile = tmp_path / "other.json"
    profile.write_bytes(raw)
    digest = hashlib.sha256(raw).hexdigest()
    server = launch(saved, "--profile-uri", str(profile), "--profile-sha256", digest, name="iris")
    server.wait_for_log("profile has 1 features, the model takes 6")
    assert server.request("GET", "/v2/health/ready").status == 503
