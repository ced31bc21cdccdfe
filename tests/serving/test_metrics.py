"""/metrics moves as requests are made, and client errors never look like model errors."""

from __future__ import annotations

from tests.serving.process import ServerProcess

ROW = [0.5, -1.0, 2.0, 0.0, 1.5, -0.5]
V2_OK = 'modeldeploy_requests_total{protocol="v2",status_class="2xx"}'
V1_OK = 'modeldeploy_requests_total{protocol="v1",status_class="2xx"}'
V1_BAD = 'modeldeploy_requests_total{protocol="v1",status_class="4xx"}'


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def test_requests_latency_and_batches_are_counted(classifier_server: ServerProcess) -> None:
    before = classifier_server.metrics()
    for _ in range(3):
        assert classifier_server.infer([ROW, ROW]).status == 200
    body = {"instances": [ROW]}
    assert classifier_server.request("POST", "/v1/models/iris:predict", body).status == 200
    after = classifier_server.metrics()
    assert delta(before, after, V2_OK) == 3
    assert delta(before, after, V1_OK) == 1
    assert delta(before, after, "modeldeploy_request_duration_seconds_count") == 4
    assert delta(before, after, "modeldeploy_request_duration_seconds_sum") > 0
    assert delta(before, after, "modeldeploy_batch_size_sum") == 3 * 2 + 1
    assert after["modeldeploy_requests_in_flight"] == 0
    assert delta(before, after, "modeldeploy_model_errors_total") == 0


def test_latency_histogram_has_sub_millisecond_buckets(classifier_server: ServerProcess) -> None:
    buckets = {
        name for name in classifier_server.metrics() if "request_duration_seconds_bucket" in name
    }
    for edge in ("0.0001", "0.00025", "0.0005", "0.001", "0.25"):
        assert f'modeldeploy_request_duration_seconds_bucket{{le="{edge}"}}' in buckets


def test_client_errors_are_counted_by_reason_and_never_as_model_errors(
    classifier_server: ServerProcess,
) -> None:
    before = classifier_server.metrics()
    path = "/v1/models/iris:predict"
    assert classifier_server.request("POST", path, b"{oops").status == 400
    assert classifier_server.request("POST", path, {"instances": [ROW[:2]]}).status == 400
    assert classifier_server.request("POST", "/v1/models/other:predict", b"{}").status == 404
    after = classifier_server.metrics()
    assert delta(before, after, V1_BAD) == 3
    reasons = ("malformed_json", "invalid_input", "model_not_found")
    for reason in reasons:
        assert delta(before, after, f'modeldeploy_client_errors_total{{reason="{reason}"}}') == 1
    assert delta(before, after, "modeldeploy_model_errors_total") == 0
    # Client errors are not part of the latency the rollback analysis watches.
    assert delta(before, after, "modeldeploy_request_duration_seconds_count") == 0


def test_model_info_and_readiness_gauges(classifier_server: ServerProcess) -> None:
    metrics = classifier_server.metrics()
    [info] = [name for name in metrics if name.startswith("modeldeploy_model_info")]
    assert 'name="iris"' in info
    assert 'version="7"' in info
    assert 'format="joblib"' in info
    assert "sha256=" in info
    sha_prefix = info.split('sha256="')[1].split('"')[0]
    assert len(sha_prefix) == 12
    assert metrics[info] == 1
    assert metrics["modeldeploy_model_ready"] == 1
    assert metrics["process_resident_memory_bytes"] > 0
