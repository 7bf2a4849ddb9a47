"""The commands that talk to a running server through `bluegreen.client`: `status`,
`versions`, `promote`, `rollback`, `reload`, `canary`, `reject`, `unreject`, `predict` and
`ready`. The address and admin token come from the same settings as `serve`
(`BLUEGREEN_URL`, else `BLUEGREEN_HOST`/`BLUEGREEN_PORT`; `BLUEGREEN_ADMIN_TOKEN`); `--url`
and `--token` override them."""

from __future__ import annotations

import functools
import getpass
import re
import time
from collections.abc import Callable
from typing import Any

import attrs
import click
import httpx
import msgspec

from bluegreen.cli import output
from bluegreen.client import Client, errors, models

ACTOR_RE = re.compile(r"[A-Za-z0-9._@+-]{1,64}")
"""What the server accepts in X-Admin-Actor."""


def _default_actor() -> str | None:
    """The login name, so the audit log says who; None (the server's "admin") if unusable."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        return None
    return name if ACTOR_RE.fullmatch(name) else None


def server_url(host: str, port: int) -> str:
    """Where a local `bluegreen serve` with these settings listens."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - a listen address, not one this binds
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@attrs.frozen
class Transport:
    """An `httpx.Client` the commands use instead of opening their own, found in the click
    context object (tests pass the app in-process: `CliRunner().invoke(cli, args,
    obj=Transport(TestClient(app)))`)."""

    http: httpx.Client


@attrs.frozen
class Session:
    client: Client
    url: str
    as_json: bool


def _open(url: str | None, token: str | None, actor: str | None, as_json: bool) -> Session:
    from bluegreen.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        click.echo(f"bluegreen: invalid settings: {exc}", err=True)
        click.get_current_context().exit(output.EXIT_USAGE)
    url = url or settings.server.url or server_url(settings.server.host, settings.server.port)
    if actor is not None and not ACTOR_RE.fullmatch(actor):
        raise click.BadParameter("1-64 characters of A-Z a-z 0-9 . _ @ + -", param_hint="--actor")
    transport = click.get_current_context().find_object(Transport)
    client = Client(
        url,
        token=token if token is not None else settings.admin.token,
        actor=actor if actor is not None else _default_actor(),
        model_name=settings.registry.model_name,
        http=transport.http if transport is not None else None,
    )
    return Session(client, url, as_json)


def _hint(error: errors.BluegreenError, url: str) -> str | None:
    if isinstance(error, errors.Unreachable):
        return f"no server answers at {url}: start one with `bluegreen serve`, or pass --url"
    if isinstance(error, errors.Unauthorized):
        return "pass --token or set BLUEGREEN_ADMIN_TOKEN to the server's admin token"
    if isinstance(error, errors.Forbidden):
        return "the server has no BLUEGREEN_ADMIN_TOKEN set, so its admin API is off"
    return None


def remote(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command the connection options and a `Session`; report client errors with the
    exit code they mean."""

    @click.option("--url", help="Server address (default: BLUEGREEN_URL, else "
                  "http://BLUEGREEN_HOST:BLUEGREEN_PORT).")  # fmt: skip
    @click.option("--token", help="Admin token (default: BLUEGREEN_ADMIN_TOKEN).")
    @click.option("--actor", help="Name the audit log records (default: your login name).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @functools.wraps(command)
    def run(url: str | None, token: str | None, actor: str | None, as_json: bool,
            **kwargs: Any) -> None:  # fmt: skip
        session = _open(url, token, actor, as_json)
        with session.client:
            try:
                command(session, **kwargs)
            except errors.BluegreenError as exc:
                output.fail(exc, as_json=as_json, hint=_hint(exc, session.url))

    return run


def _warn(message: str | None) -> None:
    if message:
        click.echo(f"bluegreen: warning: {message}", err=True)


@click.command("status")
@remote
def status(session: Session) -> None:
    """The live version, the candidate and canary, readiness, and both slots."""
    slots = session.client.slots()
    document = {**msgspec.to_builtins(slots), "live_version": slots.live_version}
    output.emit(document, as_json=session.as_json, lines=output.status_lines(slots))


@click.command("versions")
@remote
def versions(session: Session) -> None:
    """The alias, the fleet-wide promotion history, and rejected versions with reasons."""
    view = session.client.versions()
    output.emit(view, as_json=session.as_json, lines=output.versions_lines(view))


@click.command("promote")
@click.argument("version", type=click.IntRange(min=1), required=False)
@remote
def promote(session: Session, version: int | None) -> None:
    """Promote the canary now, or pin VERSION (load, smoke-test, serve, move the alias)."""
    result = session.client.promote(version)
    what = "promoted the candidate" if version is None else "pinned"
    output.emit(result, as_json=session.as_json,
                lines=[f"{what}: version {result.version} serves"])  # fmt: skip
    _warn(result.alias_error and f"the registry alias did not move: {result.alias_error}")


@click.command("rollback")
@remote
def rollback(session: Session) -> None:
    """Go one step back in the promotion history (fleet-wide)."""
    result = session.client.rollback()
    line = f"rolled back: version {result.version} serves"
    if result.from_version is not None:
        line += f" (was {result.from_version})"
    output.emit(result, as_json=session.as_json, lines=[line])
    _warn(result.alias_error and f"the registry alias did not move: {result.alias_error}")


@click.command("reload")
@remote
def reload(session: Session) -> None:
    """Reconcile with the registry now (instead of within BLUEGREEN_CONTROL_INTERVAL_S)."""
    result = session.client.reload()
    line = f"reload: {result.status.replace('_', ' ')}"
    if result.version is not None:
        line += f", version {result.version}"
    if result.detail:
        line += f" ({result.detail})"
    output.emit(result, as_json=session.as_json, lines=[line])
    if result.status == "failed":
        click.get_current_context().exit(output.EXIT_UNAVAILABLE)


@click.command("canary")
@click.argument("percent_or_abort", metavar="PERCENT|abort")
@remote
def canary(session: Session, percent_or_abort: str) -> None:
    """Set the canary share for new versions (fleet-wide), or `abort` the running canary
    (its version is rejected)."""
    if percent_or_abort == "abort":
        aborted = session.client.abort_canary()
        line = f"canary aborted: version {aborted.aborted_version} rejected"
        output.emit(aborted, as_json=session.as_json, lines=[line])
        return
    try:
        percent = float(percent_or_abort)
    except ValueError:
        raise click.BadParameter("a percentage (0-100) or `abort`",
                                 param_hint="PERCENT|abort") from None  # fmt: skip
    result = session.client.set_canary(percent)
    output.emit(result, as_json=session.as_json,
                lines=[f"canary: new versions get {result.percent:g}% of traffic"])  # fmt: skip
    _warn(result.fleet_error and f"only this process changed: {result.fleet_error}")


@click.command("reject")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--reason", required=True, help="Why (1-500 characters; kept in the registry).")
@remote
def reject(session: Session, version: int, reason: str) -> None:
    """Reject VERSION fleet-wide; if it serves, the fleet goes back to the last good one."""
    result = session.client.reject(version, reason)
    line = f"version {result.version} rejected: {result.rejected or reason}"
    if result.live_version is not None:
        line += f"; version {result.live_version} serves"
    output.emit(result, as_json=session.as_json, lines=[line])


@click.command("unreject")
@click.argument("version", type=click.IntRange(min=1))
@remote
def unreject(session: Session, version: int) -> None:
    """Clear VERSION's rejection (audited); `promote VERSION` then serves it."""
    result = session.client.unreject(version)
    line = f"version {result.version} is no longer rejected"
    if result.was:
        line += f" (was: {result.was})"
    output.emit(result, as_json=session.as_json, lines=[line])


@click.command("predict")
@click.argument("texts", nargs=-1, required=True)
@remote
def predict(session: Session, texts: tuple[str, ...]) -> None:
    """Classify TEXT (several: one batch, answered by one version)."""
    if len(texts) == 1:
        prediction = session.client.predict(texts[0])
        output.emit(prediction, as_json=session.as_json,
                    lines=output.prediction_lines(prediction))  # fmt: skip
        return
    batch = session.client.predict_batch(list(texts))
    output.emit(batch, as_json=session.as_json, lines=output.batch_lines(batch))


@click.command("ready")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to wait for the server to serve a version (a first start trains "
              "one first).")  # fmt: skip
@remote
def ready(session: Session, wait_s: float) -> None:
    """Whether the server serves a version (/readyz); exit 3 while it does not."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            health: models.Health | None = session.client.ready()
        except errors.Unreachable:
            if time.monotonic() >= deadline:
                raise
            health = None
        if health is not None and (health.ready or time.monotonic() >= deadline):
            break
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    line = (f"ready: version {health.version} serves (slot {health.slot})" if health.ready
            else f"not ready: {health.reason}")  # fmt: skip
    output.emit(health, as_json=session.as_json, lines=[line])
    if not health.ready:
        click.get_current_context().exit(output.EXIT_UNAVAILABLE)


COMMANDS = [status, versions, promote, rollback, reload, canary, reject, unreject, predict, ready]
