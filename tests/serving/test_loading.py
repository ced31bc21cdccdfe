"""Nothing unverified is loaded; every refusal names its cause; the server stays up, not ready."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import joblib
import pytest
import sklearn.base
from sklearn.linear_model import LogisticRegression

from modeldeploy_serving import errors, loading
from modeldeploy_serving.config import ServerConfig, parse_config
from tests.serving import models
from tests.serving.models import SavedModel
from tests.serving.process import ServerProcess, server_command, server_env

WRONG_SHA256 = "0" * 64


def config_for(saved: SavedModel, *args: str, sha256: str | None = None) -> ServerConfig:
    argv = ["--model-uri", str(saved.path), "--model-name", "m", "--format", saved.format]
    return parse_config([*argv, "--sha256", sha256 or saved.sha256, *args], {})


def saved_bytes(path: Path, data: bytes, fmt: models.Format = "joblib") -> SavedModel:
    path.write_bytes(data)
    return SavedModel(path, hashlib.sha256(data).hexdigest(), fmt, 0, None)


def classifier_bytes(directory: Path, fmt: models.Format = "joblib") -> bytes:
    return models.train_classifier(directory, fmt).path.read_bytes()


# --- the load pipeline, in-process: one test per refusal ---------------------------------------
@pytest.mark.parametrize("fmt", ["joblib", "skops"])
def test_only_a_pickle_artifact_logs_a_warning_recommending_skops(
    tmp_path: Path, fmt: models.Format, caplog: pytest.LogCaptureFixture
) -> None:
    saved = models.train_classifier(tmp_path, fmt)
    with caplog.at_level("WARNING", logger="modeldeploy_serving"):
        loading.load_verified(config_for(saved))
    pickle = [r for r in caplog.records if "joblib/pickle" in r.getMessage()]
    assert len(pickle) == (fmt == "joblib")
    assert all(r.levelname == "WARNING" and "skops" in r.getMessage() for r in pickle)


def test_sha256_mismatch_is_refused_before_deserializing(tmp_path: Path) -> None:
    saved = models.train_classifier(tmp_path)
    with pytest.raises(errors.Sha256Mismatch) as caught:
        loading.load_verified(config_for(saved, sha256=WRONG_SHA256))
    assert f"sha256 is {saved.sha256}, expected {WRONG_SHA256}" in str(caught.value)
    assert caught.value.exit_code == 5


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda d: saved_bytes(d / "x.joblib", b"not a pickle"), errors.InvalidArtifact,
         "not a loadable joblib artifact"),
        (lambda d: saved_bytes(d / "t.joblib", classifier_bytes(d)[:200]),
         errors.InvalidArtifact, "not a loadable joblib artifact"),
        (lambda d: saved_bytes(d / "s.joblib", classifier_bytes(d, "skops")),
         errors.InvalidArtifact, "format is joblib but the artifact is a zip archive"),
        (lambda d: saved_bytes(d / "j.skops", classifier_bytes(d), "skops"),
         errors.InvalidArtifact, "format is skops but the artifact is not a zip archive"),
        (lambda d: models.save(models.FailingClassifier().fit(*_data()), d, "f", "skops"),
         errors.UntrustedTypes, "tests.serving.models.FailingClassifier"),
        (lambda d: models.save(_Dict(), d, "dict"), errors.InvalidArtifact, "has no predict()"),
        (lambda d: _save_unfitted(d), errors.InvalidArtifact, "has no n_features_in_"),
        (lambda d: models.train_failing(d, fail_warmup=True), errors.WarmupFailed,
         "warm-up on 1 example row(s): predict() raised RuntimeError"),
    ],
    ids=["garbage", "truncated", "skops-as-joblib", "joblib-as-skops", "untrusted-type",
         "not-an-estimator", "unfitted", "warm-up-fails"],
)  # fmt: skip
def test_unloadable_artifacts_are_refused_with_their_cause(
    tmp_path: Path,
    make: Callable[[Path], SavedModel],
    error: type[errors.LoadError],
    words: str,
) -> None:
    saved = make(tmp_path)
    with pytest.raises(error) as caught:
        loading.load_verified(config_for(saved))
    assert words in str(caught.value)


def test_skops_type_trusted_on_purpose_loads(tmp_path: Path) -> None:
    saved = models.save(models.FailingClassifier().fit(*_data()), tmp_path, "f", "skops")
    trusted = "tests.serving.models.FailingClassifier"
    loaded = loading.load_verified(config_for(saved, "--skops-trusted-type", trusted))
    assert loaded.signature.n_features == models.N_FEATURES


def test_artifact_from_another_sklearn_minor_version_is_refused_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(sklearn.base, "__version__", "1.2.2")  # what __getstate__ records
        saved = models.train_classifier(tmp_path)
    with pytest.raises(errors.IncompatibleSklearnVersion) as caught:
        loading.load_verified(config_for(saved))
    assert f"saved with scikit-learn 1.2.2, this server runs {sklearn.__version__}" in str(
        caught.value
    )
    loaded = loading.load_verified(config_for(saved, "--allow-sklearn-version-mismatch"))
    assert loaded.saved_sklearn_version == "1.2.2"


def test_missing_and_oversized_artifacts(tmp_path: Path) -> None:
    saved = models.train_classifier(tmp_path)
    with pytest.raises(errors.FetchFailed, match="No such file"):
        loading.load_verified(replace(config_for(saved), model_uri=str(tmp_path / "absent")))
    with pytest.raises(errors.ArtifactTooLarge, match="limit is 100"):
        loading.load_verified(config_for(saved, "--max-artifact-bytes", "100"))


# --- the server process ----------------------------------------------------------------------
def test_server_with_wrong_sha256_stays_live_but_never_ready(
    tmp_path: Path, trained: dict[str, SavedModel], launch: Callable[..., ServerProcess]
) -> None:
    termination_log = tmp_path / "termination-log"
    server = launch(
        trained["classifier-joblib"], sha256=WRONG_SHA256, termination_log=termination_log
    )
    failure = server.wait_for_log("model load failed")
    assert "Sha256Mismatch" in failure
    assert WRONG_SHA256 in failure
    ready = server.request("GET", "/v2/health/ready")
    assert ready.status == 503
    assert "Sha256Mismatch" in ready.json()["reason"]
    assert server.request("GET", "/v2/health/live").status == 200
    assert server.request("GET", "/v2/models/model/ready").status == 503
    assert server.request("GET", "/v2/models/model").status == 503
    infer = server.infer([[0.0] * 6])
    assert (infer.status, infer.json()["reason"]) == (503, "model_not_ready")
    metrics = server.metrics()
    assert metrics['modeldeploy_model_load_failure{reason="Sha256Mismatch"}'] == 1
    assert metrics["modeldeploy_model_ready"] == 0
    assert termination_log.read_text().startswith("Sha256Mismatch: ")
    assert sum("model load failed" in line for line in server.log) == 1
    assert server.terminate() == 0


def test_init_container_mode_exit_codes(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    """--fetch-to: download, verify, test-load, write; each failure has its documented code."""
    root, base = http_root
    saved = models.train_classifier(root, name="served")
    url = f"{base}/served.joblib"
    cases = {
        "ok": ([url, saved.sha256], 0),
        "sha256 mismatch": ([url, WRONG_SHA256], 5),
        "http 404": ([f"{base}/absent.joblib", saved.sha256], 3),
        "too large": ([url, saved.sha256, "--max-artifact-bytes", "100"], 4),
        "bad flag": ([url, "not-hex"], 2),
    }
    running = {}
    for name, ([uri, sha256, *extra], _) in cases.items():
        out = tmp_path / name / "model.joblib"
        command = server_command(None, "--model-uri", uri, "--sha256", sha256, "--fetch-to",
                                 str(out), "--termination-log", str(tmp_path / f"{name}.log"),
                                 "--allow-loopback-downloads", *extra)  # fmt: skip
        running[name] = (out, subprocess.Popen(command, env=server_env(), stderr=subprocess.PIPE))
    for name, (out, process) in running.items():
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == cases[name][1], (name, stderr.decode())
        assert out.exists() == (name == "ok"), name
    assert (tmp_path / "ok" / "model.joblib").read_bytes() == saved.path.read_bytes()
    assert (tmp_path / "sha256 mismatch.log").read_text().startswith("Sha256Mismatch: ")
    assert "HTTP 404" in (tmp_path / "http 404.log").read_text()


def _data() -> tuple[object, object]:
    return models.sample_rows(40), [0, 1] * 20


class _Dict(dict[str, int]):
    n_features_in_ = 6


def _save_unfitted(directory: Path) -> SavedModel:
    path = directory / "unfitted.joblib"
    joblib.dump(LogisticRegression(), path)
    return SavedModel(path, hashlib.sha256(path.read_bytes()).hexdigest(), "joblib", 0, None)
