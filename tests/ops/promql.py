"""Metric names: the ones bluegreen exports, and the ones a PromQL expression refers to."""

from __future__ import annotations

import re
from functools import cache

from prometheus_client.metrics import MetricWrapperBase

# Litestar's PrometheusMiddleware with prefix "http" (bluegreen.metrics.http_metrics_config).
HTTP_METRICS = frozenset(
    {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_sum",
        "http_request_duration_seconds_count",
        "http_requests_in_progress",
        "http_requests_error_total",
    }
)
PROMETHEUS_METRICS = frozenset({"up", "scrape_duration_seconds", "ALERTS"})

_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
_KEYWORDS = frozenset(
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "and",
        "or",
        "unless",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "limitk",
        "limit_ratio",
        "inf",
        "nan",
    ]
)


@cache
def exported_metrics() -> frozenset[str]:
    """Every series name bluegreen.metrics defines, with the suffixes Prometheus sees."""
    import bluegreen.metrics as module

    names: set[str] = set(HTTP_METRICS)
    for value in vars(module).values():
        if isinstance(value, MetricWrapperBase):
            kind = value._type
            names.update(value._name + suffix for suffix in _SUFFIXES[kind])
    return frozenset(names)


def referenced_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression (a small tokenizer, enough for our dashboards and
    rules): drop strings, label matchers, range selectors and label lists, then keep the bare
    identifiers that are not functions, keywords or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names
