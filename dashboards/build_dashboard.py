"""Generate the bluegreen Grafana dashboard (dashboards/bluegreen.json) from code.

    python dashboards/build_dashboard.py            # write dashboards/bluegreen.json
    python dashboards/build_dashboard.py --check    # exit 1 if the committed JSON is stale

The JSON is committed so that Grafana provisioning (dashboards/provisioning/) loads it as is;
tests/ops checks that it equals this script's output and runs every PromQL expression in it
against a real Prometheus scraping a real bluegreen process.

Conventions: every panel and target uses the `${datasource}` variable; every HTTP series is
selected by `app_name="bluegreen"` (the Litestar middleware's label) and every series by
`instance=~"$instance"`, so the dashboard works for one compose container and for a fleet
whatever the scrape job is called. Metric names are the ones defined in bluegreen/metrics.py.
"""

# Panel declarations keep each PromQL expression on one line, so they are easy to copy into
# Prometheus; they are formatted by hand (fmt: skip) and exempt from the line-length rule.
# ruff: noqa: E501

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

UID = "bluegreen-serving"
TITLE = "bluegreen: model serving"
SCHEMA_VERSION = 39  # Grafana 11.0-11.2; Grafana 10.4+ and 11.x load it without migration.
OUTPUT = Path(__file__).resolve().parent / "bluegreen.json"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
INSTANCE = 'instance=~"$instance"'
HTTP = f'app_name="bluegreen", {INSTANCE}, path=~"$route"'
RATE = "$__rate_interval"

Json = dict[str, Any]


def sel(metric: str, *matchers: str) -> str:
    """`metric{instance=~"$instance", ...}`."""
    return f"{metric}{{{', '.join((INSTANCE, *matchers))}}}"


def http_sel(metric: str, *matchers: str) -> str:
    return f"{metric}{{{', '.join((HTTP, *matchers))}}}"


def target(expr: str, legend: str = "__auto", *, instant: bool = False) -> Json:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
    }


class Layout:
    """Places panels left to right on Grafana's 24-column grid, row by row."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "id": self._id(),
                "panels": [],
                "title": title,
                "type": "row",
            }
        )
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
        self.x = 0
        self.row_height = 0

    def add(self, panel: Json, *, w: int = 12, h: int = 8) -> None:
        if self.x + w > 24:
            self._newline()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        panel["id"] = self._id()
        for ref, tgt in zip("ABCDEFGHIJ", panel["targets"], strict=False):
            tgt["refId"] = ref
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)


def timeseries(
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str = "short",
    stacked: bool = False,
    stepped: bool = False,
    min_zero: bool = True,
) -> Json:
    custom: Json = {
        "drawStyle": "line",
        "fillOpacity": 10 if not stacked else 40,
        "lineInterpolation": "stepAfter" if stepped else "linear",
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
    }
    defaults: Json = {"custom": custom, "unit": unit}
    if min_zero:
        defaults["min"] = 0
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"calcs": ["lastNotNull", "max"], "displayMode": "table",
                       "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
        "title": title,
        "type": "timeseries",
    }  # fmt: skip


def state_timeline(title: str, description: str, targets: list[Json], text: str) -> Json:
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {
            "defaults": {
                "color": {"mode": "palette-classic"},
                "custom": {"fillOpacity": 80, "lineWidth": 0},
                "mappings": [{"options": {"1": {"index": 0, "text": text}}, "type": "value"}],
            },
            "overrides": [],
        },
        "options": {
            "alignValue": "center",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
            "mergeValues": True,
            "rowHeight": 0.8,
            "showValue": "never",
            "tooltip": {"mode": "single", "sort": "none"},
        },
        "targets": targets,
        "title": title,
        "type": "state-timeline",
    }


def stat(
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str = "short",
    text_mode: str = "value_and_name",
    thresholds: list[tuple[float | None, str]] | None = None,
) -> Json:
    steps = [{"color": color, "value": value} for value, color in
             (thresholds or [(None, "green")])]  # fmt: skip
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {
            "defaults": {"thresholds": {"mode": "absolute", "steps": steps}, "unit": unit},
            "overrides": [],
        },
        "options": {
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": text_mode,
        },
        "targets": targets,
        "title": title,
        "type": "stat",
    }


def quantiles(
    metric: str, by: str, matchers: tuple[str, ...], legend: str, *, http: bool
) -> list[Json]:
    selector = http_sel(metric, *matchers) if http else sel(metric, *matchers)
    return [
        target(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({selector}[{RATE}])))",
            f"p{round(q * 100)} {legend}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def ratio_or_zero(errors: str, total: str, by: str) -> str:
    """errors/total by `by`, 0 (not absent) where there were no errors at all."""
    return (
        f"(sum by ({by}) (rate({errors}[{RATE}])) or sum by ({by}) (rate({total}[{RATE}])) * 0)"
        f" / sum by ({by}) (rate({total}[{RATE}]))"
    )


def counter_or_zero(metric: str, by: str, anchor: str) -> str:
    """Total of a rarely incremented counter, or 0 per model while it has never been incremented
    (the series only appears on its first increment)."""
    return f"sum by ({by}) ({sel(metric)}) or on (model) sum by (model) ({sel(anchor)}) * 0"


def panels() -> list[Json]:
    lay = Layout()
    client_and_server_errors = http_sel("http_requests_total", 'status_code=~"[45].."')

    # --- traffic --------------------------------------------------------------------------------
    lay.row("Traffic")
    lay.add(timeseries(
        "Request rate by route and status",
        "HTTP requests per second by route template and status code (Litestar middleware).",
        [target(f"sum by (path, status_code) (rate({http_sel('http_requests_total')}[{RATE}]))",
                "{{path}} {{status_code}}")],
        unit="reqps",
    ))  # fmt: skip
    lay.add(timeseries(
        "5xx error ratio by route",
        "Share of requests answered with a 5xx (0 when there were none). SLO: 0.1% on /predict*.",
        [target(ratio_or_zero(http_sel("http_requests_total", 'status_code=~"5.."'),
                              http_sel("http_requests_total"), "path"), "{{path}}")],
        unit="percentunit",
    ))  # fmt: skip
    lay.add(timeseries(
        "Errors by route and status",
        "4xx and 5xx responses per second, and requests shed with 503 before reaching a model.",
        [
            target(f"sum by (path, status_code) (rate({client_and_server_errors}[{RATE}]))",
                   "{{path}} {{status_code}}"),
            target(f"sum by (reason) (rate({sel('bluegreen_requests_shed_total')}[{RATE}]))",
                   "shed: {{reason}}"),
        ],
        unit="reqps",
    ))  # fmt: skip
    lay.add(timeseries(
        "Latency p50 / p95 / p99 by route",
        "Server-side request duration from http_request_duration_seconds. SLO: p99 of POST "
        "/predict under 250 ms.",
        quantiles("http_request_duration_seconds_bucket", "path", (), "{{path}}", http=True),
        unit="s",
    ))  # fmt: skip

    # --- versions and slots ---------------------------------------------------------------------
    lay.row("Model versions and slots")
    lay.add(stat(
        "Live version now",
        "Versions that a live slot serves, with the number of instances serving each. More than "
        "one line means the fleet is converging on a new registry alias.",
        [target(f"count by (version, slot) ({sel('model_version_info')} == 1)",
                "v{{version}} on {{slot}}", instant=True)],
        text_mode="value_and_name",
    ), w=6)  # fmt: skip
    lay.add(state_timeline(
        "Live version and slot over time",
        "Which version each slot served while it was live (model_version_info == 1).",
        [target(f"max by (slot, version) ({sel('model_version_info')} == 1)",
                "v{{version}} on {{slot}}")],
        "live",
    ), w=9)  # fmt: skip
    lay.add(state_timeline(
        "Slot states over time",
        "Lifecycle of each slot: empty, loading, smoke, canary, live, draining, retained.",
        [target(f"max by (slot, state) ({sel('bluegreen_slot_state')} == 1)", "{{slot}}: {{state}}")],
        "on",
    ), w=9)  # fmt: skip
    lay.add(timeseries(
        "Traffic share per slot",
        "Share of model calls answered by each slot; during a canary the candidate's share "
        "should follow the configured canary share.",
        [
            target(
                f"sum by (slot) (rate({sel('bluegreen_prediction_duration_seconds_count')}[{RATE}]))"
                f" / ignoring (slot) group_left"
                f" sum(rate({sel('bluegreen_prediction_duration_seconds_count')}[{RATE}]))",
                "{{slot}}",
            ),
            target(f"max({sel('bluegreen_canary_share')})", "configured canary share"),
        ],
        unit="percentunit",
    ))  # fmt: skip
    lay.add(timeseries(
        "Model latency per slot (p50 / p95 / p99)",
        "Model call latency by slot and version: compare candidate and live during a canary.",
        quantiles("bluegreen_prediction_duration_seconds_bucket", "slot, version", (),
                  "{{slot}} v{{version}}", http=False),
        unit="s",
    ))  # fmt: skip
    lay.add(timeseries(
        "Model error ratio per slot",
        "Model calls that raised or returned garbage, as a share of calls, by slot and version.",
        [target(ratio_or_zero(sel("bluegreen_prediction_errors_total"),
                              sel("bluegreen_prediction_duration_seconds_count"), "slot, version"),
                "{{slot}} v{{version}}")],
        unit="percentunit",
    ))  # fmt: skip
    lay.add(timeseries(
        "Predictions by label",
        "Texts classified per second by slot, version and label: a label mix that shifts at a "
        "swap points at a model change, not a traffic change.",
        [target(f"sum by (slot, version, label) (rate({sel('bluegreen_predictions_total')}[{RATE}]))",
                "{{slot}} v{{version}} {{label}}")],
        unit="short",
        stacked=True,
    ))  # fmt: skip
    lay.add(timeseries(
        "Canary: shadow disagreement and decisions",
        "Share of shadow-scored requests where candidate and live chose different labels, and "
        "how canaries ended (empty until a canary has run).",
        [
            target(ratio_or_zero(sel("bluegreen_canary_disagreements_total"),
                                 sel("bluegreen_canary_compared_total"), "model"),
                   "disagreement {{model}}"),
            target(f"sum by (model, decision) ({sel('bluegreen_canary_decisions_total')})",
                   "{{decision}} (total)"),
        ],
        unit="short",
    ))  # fmt: skip

    # --- lifecycle ------------------------------------------------------------------------------
    lay.row("Model lifecycle")
    lay.add(timeseries(
        "Model loads, successes, failures and hot swaps",
        "Counters since process start (sum over instances): a step is an event. Failures by "
        "reason: load_error, smoke_failed, canary_rejected.",
        [
            target(f"sum by (model) ({sel('model_load_total')})", "loads {{model}}"),
            target(f"sum by (model) ({sel('model_load_success_total')})", "successes {{model}}"),
            target(f"sum by (model) ({sel('model_hot_swap_total')})", "hot swaps {{model}}"),
            target(f"sum by (model, reason) ({sel('bluegreen_model_load_failures_total')})"
                   f" or on (model) sum by (model) ({sel('model_load_total')}) * 0",
                   "failures {{model}} {{reason}}"),
        ],
        stepped=True,
    ), w=9)  # fmt: skip
    lay.add(stat(
        "Hot swaps and rollbacks",
        "Hot swaps in the selected time range, and rollbacks since process start.",
        [
            target(f"sum by (model) (increase({sel('model_hot_swap_total')}[$__range]))",
                   "hot swaps (range)", instant=True),
            target(counter_or_zero("bluegreen_rollbacks_total", "model", "model_load_total"),
                   "rollbacks", instant=True),
        ],
        thresholds=[(None, "green"), (1, "orange")],
    ), w=6)  # fmt: skip
    lay.add(timeseries(
        "Model load duration",
        "Time to download and load a version (smoke excluded): mean since process start, and "
        "the mean of loads inside each interval (points only where a load happened).",
        [
            target(f"sum by (model) ({sel('bluegreen_model_load_duration_seconds_sum')})"
                   f" / sum by (model) ({sel('bluegreen_model_load_duration_seconds_count')})",
                   "mean since start {{model}}"),
            target(f"sum by (model) (rate({sel('bluegreen_model_load_duration_seconds_sum')}[{RATE}]))"
                   f" / sum by (model) (rate({sel('bluegreen_model_load_duration_seconds_count')}[{RATE}]))",
                   "loads in interval {{model}}"),
        ],
        unit="s",
    ), w=9)  # fmt: skip
    lay.add(timeseries(
        "In-flight requests per slot",
        "Requests leased to each slot; after a promotion the old slot drains to 0.",
        [target(f"sum by (slot) ({sel('bluegreen_slot_inflight')})", "{{slot}}")],
    ), w=8)  # fmt: skip
    lay.add(timeseries(
        "Drain duration per slot",
        "Time from promotion until the old slot had no request in flight (mean since start, "
        "and p99 within each interval).",
        [
            target(f"sum by (slot) ({sel('bluegreen_slot_drain_duration_seconds_sum')})"
                   f" / sum by (slot) ({sel('bluegreen_slot_drain_duration_seconds_count')})",
                   "mean {{slot}}"),
            target(f"histogram_quantile(0.99, sum by (le, slot) "
                   f"(rate({sel('bluegreen_slot_drain_duration_seconds_bucket')}[{RATE}])))",
                   "p99 {{slot}}"),
        ],
        unit="s",
    ), w=8)  # fmt: skip
    lay.add(timeseries(
        "Models freed and leaks",
        "Old models released after draining, and released models still reachable after gc "
        "(a leak: memory grows with each swap).",
        [
            target(f"sum by (model) ({sel('bluegreen_models_freed_total')})", "freed {{model}}"),
            target(counter_or_zero("bluegreen_model_free_leaks_total", "model", "model_load_total"),
                   "leaked {{model}}"),
        ],
        stepped=True,
    ), w=8)  # fmt: skip

    # --- registry and process -------------------------------------------------------------------
    lay.row("Registry and process")
    lay.add(timeseries(
        "Registry polls by result",
        "Registry reconciles in the last 10 minutes by result (ok, error); errors with no ok "
        "mean the registry is unreachable and new versions are not picked up.",
        [target(f"sum by (result) (increase({sel('bluegreen_registry_polls_total')}[10m]))",
                "{{result}}")],
    ), w=8)  # fmt: skip
    lay.add(stat(
        "Since last successful registry poll",
        "Seconds since each instance last reached the registry. Alert at 15 minutes.",
        [target(f"time() - max by (instance) ({sel('bluegreen_registry_last_success_timestamp_seconds')})",
                "{{instance}}", instant=True)],
        unit="s",
        thresholds=[(None, "green"), (600, "orange"), (900, "red")],
    ), w=4)  # fmt: skip
    lay.add(timeseries(
        "Process memory per worker (RSS)",
        "Resident set size of each worker; it should return to its level after every swap.",
        [target(f"max by (instance, pid) ({sel('bluegreen_process_resident_memory_bytes')})",
                "{{instance}} pid {{pid}}")],
        unit="bytes",
    ), w=12)  # fmt: skip
    lay.add(timeseries(
        "Threads and open file descriptors per worker",
        "Threads and open fds of each worker process.",
        [
            target(f"max by (instance, pid) ({sel('bluegreen_process_threads')})",
                   "threads {{instance}} pid {{pid}}"),
            target(f"max by (instance, pid) ({sel('bluegreen_process_open_fds')})",
                   "fds {{instance}} pid {{pid}}"),
        ],
    ), w=24, h=7)  # fmt: skip
    return lay.panels


def variables() -> list[Json]:
    def query_var(name: str, label: str, query: str) -> Json:
        return {
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "datasource": DATASOURCE,
            "definition": query,
            "hide": 0,
            "includeAll": True,
            "label": label,
            "multi": True,
            "name": name,
            "options": [],
            "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "regex": "",
            "skipUrlSync": False,
            "sort": 1,
            "type": "query",
        }  # fmt: skip

    return [
        {
            "current": {},
            "hide": 0,
            "includeAll": False,
            "label": "Data source",
            "multi": False,
            "name": "datasource",
            "options": [],
            "query": "prometheus",
            "refresh": 1,
            "regex": "",
            "skipUrlSync": False,
            "type": "datasource",
        },
        query_var("instance", "Instance", 'label_values(http_requests_total{app_name="bluegreen"}, instance)'),
        query_var("route", "Route",
                  'label_values(http_requests_total{app_name="bluegreen", instance=~"$instance"}, path)'),
    ]  # fmt: skip


def annotations() -> list[Json]:
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }

    def event(name: str, expr: str, color: str) -> Json:
        return {
            "datasource": DATASOURCE,
            "enable": True,
            "expr": expr,
            "iconColor": color,
            "name": name,
            "step": "15s",
            "titleFormat": name,
            "textFormat": "{{model}} on {{instance}}",
        }

    return [
        builtin,
        event("Hot swap", f"sum by (instance, model) (changes({sel('model_hot_swap_total')}[1m])) > 0", "green"),
        event("Rollback", f"sum by (instance, model) (changes({sel('bluegreen_rollbacks_total')}[1m])) > 0", "red"),
    ]  # fmt: skip


def build() -> Json:
    return {
        "annotations": {"list": annotations()},
        "description": "bluegreen: Korean sentiment API, blue/green model slots fed by the MLflow "
        "registry. Traffic and SLOs, live version per slot, canary, swaps, registry and memory.",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [],
        "panels": panels(),
        "refresh": "10s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["bluegreen", "mlflow", "serving"],
        "templating": {"list": variables()},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": TITLE,
        "uid": UID,
        "version": 1,
        "weekStart": "",
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(
                f"{args.output} is stale: run python dashboards/build_dashboard.py", file=sys.stderr
            )
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
