"""What the `bluegreen` command prints, and its exit codes.

Human-readable lines by default; with `--json` one JSON document on stdout (errors too, as
`{"status_code", "error", "detail", "request_id"}`), so scripts never parse prose.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any, NoReturn

import click
import msgspec

from bluegreen.client import errors, models

EXIT_OK = 0
EXIT_REFUSED = 1
"""The server refused the request (4xx): a wrong token, nothing to roll back to, an unknown
version... Sending it again will not help."""
EXIT_USAGE = 2
"""A bad command line or invalid settings (click's own usage errors exit 2 as well)."""
EXIT_UNAVAILABLE = 3
"""No answer, a 5xx, an answer this client cannot read, or not ready in time: try later."""


def exit_code(error: errors.BluegreenError) -> int:
    return EXIT_REFUSED if isinstance(error, errors.ClientError) else EXIT_UNAVAILABLE


def emit(value: Any, *, as_json: bool, lines: Iterable[str] = ()) -> None:
    """Print `value` as JSON, or the human `lines`."""
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(value), ensure_ascii=False, indent=2))
    else:
        for line in lines:
            click.echo(line)


def fail(error: errors.BluegreenError, *, as_json: bool, hint: str | None = None) -> NoReturn:
    """Report `error` and exit with its code."""
    ctx = click.get_current_context()
    if isinstance(error, errors.ApiError):
        body: dict[str, Any] = {"status_code": error.status_code, "error": error.error,
                                "detail": error.detail, "request_id": error.request_id}  # fmt: skip
        message = f"{error.status_code} {error.detail}"
        if error.request_id:
            message += f" (request id {error.request_id})"
    else:
        body = {"status_code": getattr(error, "status_code", None), "error": type(error).__name__,
                "detail": str(error), "request_id": getattr(error, "request_id", None)}  # fmt: skip
        message = str(error)
    if as_json:
        click.echo(json.dumps(body, ensure_ascii=False, indent=2))
    click.echo(f"bluegreen: {message}", err=True)
    if hint:
        click.echo(f"bluegreen: {hint}", err=True)
    ctx.exit(exit_code(error))


def when(at: float | None) -> str:
    if not at:
        return "-"
    stamp = datetime.datetime.fromtimestamp(at, tz=datetime.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def version(value: int | None) -> str:
    return "-" if value is None else f"v{value}"


def history_line(entry: models.HistoryEntry) -> str:
    moved = f"{version(entry.from_version)} -> {version(entry.version)}"
    why = f": {entry.why}" if entry.why else ""
    return f"{when(entry.at)}  {entry.action:<9} {moved:<12} by {entry.who}{why}"


def status_lines(slots: models.Slots) -> list[str]:
    live = slots.slot(slots.live)
    lines = [f"model      {slots.model}"]
    lines.append(f"live       version {live.version} (slot {live.slot})" if live and live.version
                 is not None else "live       none")  # fmt: skip
    candidate = slots.slot(slots.candidate)
    if candidate is not None:
        lines.append(f"candidate  version {candidate.version} (slot {candidate.slot}), "
                     f"canary {slots.canary_share * 100:g}% of traffic")  # fmt: skip
    else:
        lines.append("candidate  none")
    lines.append(f"canary     {slots.canary_percent:g}% for new versions")
    if slots.readiness is not None:
        ready = "yes" if slots.readiness.ready else f"no ({slots.readiness.reason})"
        lines.append(f"ready      {ready}")
        if slots.readiness.detail and not slots.readiness.ready:
            lines.append(f"           {slots.readiness.detail}")
    if slots.registry is not None:
        registry = slots.registry
        state = f"last poll ok {when(registry.last_poll_ok)}"
        if registry.last_error:
            state += f"; last error: {registry.last_error}"
        lines.append(f"registry   {state}")
        if registry.last_history_entry is not None:
            lines.append(f"last move  {history_line(registry.last_history_entry)}")
        for rejected, reason in sorted(registry.rejected_versions.items()):
            lines.append(f"rejected   {version(rejected)}: {reason}")
    if slots.last_failure:
        lines.append(f"failure    {slots.last_failure}")
    lines.append("slots")
    for slot in slots.slots:
        lines.append(f"  {slot.slot:<6} {slot.state:<10} {version(slot.version):<6} "
                     f"requests {slot.requests}, errors {slot.errors}, in flight "
                     f"{slot.in_flight}")  # fmt: skip
    return lines


def versions_lines(view: models.Versions) -> list[str]:
    lines = [f"model      {view.model}",
             f"alias      {view.alias.name} -> {version(view.alias.version)}",
             f"live       {version(view.live_version)}",
             "history    (newest first)"]  # fmt: skip
    if not view.history:
        lines.append("  none")
    lines.extend(f"  {history_line(entry)}" for entry in view.history)
    lines.append("versions   (newest first)")
    for info in view.versions:
        notes = [f"registered {when(info.created_at)}"]
        if info.in_history:
            notes.append("in history")
        if info.rejected:
            notes.append(f"REJECTED: {info.rejected}")
        lines.append(f"  {version(info.version):<6} " + ", ".join(notes))
    return lines


def prediction_lines(prediction: models.Prediction) -> list[str]:
    return [f"{prediction.sentiment} {prediction.score:.3f} (version {prediction.model_version}"
            f", slot {prediction.model_slot})"]  # fmt: skip


def batch_lines(batch: models.BatchPrediction) -> list[str]:
    lines = [f"{r.sentiment} {r.score:.3f}" for r in batch.results]
    return [*lines, f"(version {batch.model_version}, slot {batch.model_slot})"]
