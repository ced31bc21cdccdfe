"""Turn the model server's Prometheus text exposition into a :class:`Sample`. Pure.

Names come from :mod:`modeldeploy_serving.metric_names`; prometheus-client appends ``_total`` to
counters and ``_bucket``/``_count``/``_created`` to histograms. Label sets are summed, so the
server may add labels (protocol, model, ...) without breaking the monitor.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from modeldeploy_serving import metric_names
from modeldeploy_serving.monitor.window import Distributions, Feedback, Sample

CLIENT_ERROR_CLASS: Final = "4xx"  # status_class of requests rejected as the client's fault

_REQUESTS_TOTAL: Final = f"{metric_names.REQUESTS}_total"
_MODEL_ERRORS_TOTAL: Final = f"{metric_names.MODEL_ERRORS}_total"
_LATENCY_BUCKET: Final = f"{metric_names.REQUEST_LATENCY}_bucket"
# Exported by prometheus-client's ProcessCollector: the surest sign the server restarted.
_DRIFT_ROWS: Final = f"{metric_names.DRIFT_ROWS}_total"
_BIN: Final = metric_names.LABEL_BIN
_FEEDBACK_ROWS: Final = f"{metric_names.FEEDBACK_ROWS}_total"
_FEEDBACK_CORRECT: Final = f"{metric_names.FEEDBACK_CORRECT}_total"
_FEEDBACK_ERROR: Final = f"{metric_names.FEEDBACK_ABSOLUTE_ERROR}_total"
_PROCESS_START: Final = "process_start_time_seconds"
# Per-series creation times (absent when the server disables them): the fallback sign.
_CREATED: Final = frozenset(
    f"{name}_created"
    for name in (metric_names.REQUESTS, metric_names.MODEL_ERRORS, metric_names.REQUEST_LATENCY)
)


class ParseError(ValueError):
    """The endpoint answered, but not with a Prometheus exposition we can read."""


def parse_sample(text: str, t: float) -> Sample:
    """Read one scrape. Series the server has not created yet count as zero."""
    requests = client_errors = model_errors = 0.0
    buckets: defaultdict[float, float] = defaultdict(float)
    created: list[float] = []
    process_start: float | None = None
    drift_rows: defaultdict[str, dict[int, float]] = defaultdict(dict)
    reference: defaultdict[str, dict[int, float]] = defaultdict(dict)
    classified = correct = regressed = absolute_error = 0.0
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ParseError(f"not a Prometheus exposition: {exc}") from exc
    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name == _REQUESTS_TOTAL:
                if labels.get(metric_names.LABEL_STATUS_CLASS) == CLIENT_ERROR_CLASS:
                    client_errors += value
                else:
                    requests += value
            elif name == _MODEL_ERRORS_TOTAL:
                model_errors += value
            elif name == _LATENCY_BUCKET:
                buckets[_bound(labels.get("le", ""))] += value
            elif name in _CREATED:
                created.append(value)
            elif name == _PROCESS_START:
                process_start = value
            elif name == _DRIFT_ROWS:
                drift_rows[labels[metric_names.LABEL_FEATURE]][int(labels[_BIN])] = value
            elif name == metric_names.DRIFT_REFERENCE:
                reference[labels[metric_names.LABEL_FEATURE]][int(labels[_BIN])] = value
            elif name == _FEEDBACK_ROWS:
                if labels.get(metric_names.LABEL_TASK) == metric_names.TASK_REGRESSION:
                    regressed += value
                else:
                    classified += value
            elif name == _FEEDBACK_CORRECT:
                correct += value
            elif name == _FEEDBACK_ERROR:
                absolute_error += value
    return Sample(
        t=t,
        drift=_distributions(drift_rows),
        reference=_distributions(reference),
        requests=requests,
        model_errors=model_errors,
        client_errors=client_errors,
        buckets=tuple(sorted(buckets.items())),
        started=process_start if process_start is not None else min(created, default=None),
        feedback=Feedback(classified, correct, regressed, absolute_error),
    )


def _distributions(bins: Mapping[str, dict[int, float]]) -> Distributions:
    """Bins in index order; a distribution with a gap in its bins is a bad exposition."""
    out: dict[str, tuple[float, ...]] = {}
    for name, by_index in bins.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise ParseError(f"drift series of {name!r} lack bins")
        out[name] = tuple(by_index[i] for i in range(len(by_index)))
    return out


def _bound(le: str) -> float:
    try:
        return float(le)  # float() reads "+Inf" too
    except ValueError as exc:
        raise ParseError(f"histogram bucket with bad le={le!r}") from exc
