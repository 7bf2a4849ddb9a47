"""Token-protected control plane. Every route here sits behind `require_admin`."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec

from bluegreen.api.admin_auth import actor_of, peer_of, require_admin
from bluegreen.api.schemas import (
    CanaryRequest,
    ErrorBody,
    PromoteRequest,
    RejectRequest,
    UnrejectRequest,
    VersionsResponse,
)
from bluegreen.control.planner import ReconcileStatus
from bluegreen.logging import event
from bluegreen.wiring import Runtime

log = logging.getLogger("bluegreen.admin")

ADMIN_ERRORS = {
    400: ResponseSpec(ErrorBody, description="Invalid body, or an invalid X-Admin-Actor"),
    401: ResponseSpec(ErrorBody, description="Missing or wrong bearer token"),
    403: ResponseSpec(ErrorBody, description="Admin disabled: BLUEGREEN_ADMIN_TOKEN is not set"),
    404: ResponseSpec(ErrorBody, description="Unknown version"),
    409: ResponseSpec(ErrorBody, description="Not possible in the current state"),
    422: ResponseSpec(ErrorBody, description="The version was rejected (load/smoke)"),
    429: ResponseSpec(ErrorBody, description="Too many failed logins from this peer; Retry-After"),
    503: ResponseSpec(ErrorBody, description="The registry is unreachable; Retry-After"),
    504: ResponseSpec(ErrorBody, description="A registry call ran past its deadline; Retry-After"),
}


async def _strict(request: Request[Any, Any, Any], schema: Any) -> None:
    """Litestar converts bodies leniently ("5" -> 5, 2.0 -> 2); admin inputs must arrive with
    their JSON types, so a client's type error is a 400, not a silent coercion."""
    try:
        msgspec.json.decode(await request.body() or b"null", type=schema, strict=True)
    except msgspec.ValidationError as exc:
        raise ValidationException("Validation failed", extra=[{"message": str(exc)}]) from exc


def _who(request: Request[Any, Any, Any]) -> str:
    """Actor and peer for registry tags and reasons; the actor has no spaces, so the two
    cannot be confused."""
    return f"{actor_of(request)} from {peer_of(request)}"


def _audit(request: Request[Any, Any, Any], action: str, result: dict[str, Any]) -> None:
    event(log, "admin.action", action=action, actor=actor_of(request), peer=peer_of(request),
          result=result)  # fmt: skip


@get(
    "/slots",
    responses=ADMIN_ERRORS,
    summary="Both slots: state, version, in-flight, requests, errors, canary share",
)
async def slots(state: State) -> dict[str, Any]:
    runtime: Runtime = state.runtime
    view = runtime.manager.describe()
    view["model"] = runtime.settings.registry.model_name
    readiness = runtime.readiness()
    view["readiness"] = {
        "ready": readiness.ready, "reason": readiness.reason, "detail": readiness.detail,
    }  # fmt: skip
    registry: dict[str, Any] = {
        "last_poll_ok": runtime.controller.last_poll_ok,
        "last_error": runtime.controller.last_error,
        "rejected_versions": runtime.controller.rejected,
    }
    history = runtime.controller.history
    if history:
        registry["last_history_entry"] = history[-1].as_dict()
    view["registry"] = registry
    return view


@get(
    "/versions",
    responses=ADMIN_ERRORS,
    summary="Promotion history, the alias, and every version with its rejection if any",
)
async def versions(state: State) -> VersionsResponse:
    runtime: Runtime = state.runtime
    return msgspec.convert(await runtime.admin.versions(), VersionsResponse)


@post(
    "/promote",
    responses=ADMIN_ERRORS,
    status_code=200,
    summary='Promote the candidate, or pin {"version": N}',
)
async def promote(
    state: State, request: Request[Any, Any, Any], data: PromoteRequest | None = None
) -> dict[str, Any]:
    await _strict(request, PromoteRequest | None)
    runtime: Runtime = state.runtime
    version = data.version if data else None
    result = await runtime.admin.promote(version, _who(request))
    _audit(request, "promote", result)
    return result


@post(
    "/rollback",
    responses=ADMIN_ERRORS,
    status_code=200,
    summary="Fleet-wide: one step back in the registry-kept history (never forward)",
)
async def rollback(state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    runtime: Runtime = state.runtime
    result = await runtime.admin.rollback(_who(request))
    _audit(request, "rollback", result)
    return result


@post(
    "/reject",
    responses=ADMIN_ERRORS,
    status_code=200,
    summary="Reject a version fleet-wide (if live, the fleet goes back to the last good one)",
)
async def reject(
    state: State, request: Request[Any, Any, Any], data: RejectRequest
) -> dict[str, Any]:
    await _strict(request, RejectRequest)
    runtime: Runtime = state.runtime
    result = await runtime.admin.reject(data.version, data.reason, _who(request))
    _audit(request, "reject", result)
    return result


@post(
    "/unreject",
    responses=ADMIN_ERRORS,
    status_code=200,
    summary="Clear a version's rejection (audited); a pin of it then serves it",
)
async def unreject(
    state: State, request: Request[Any, Any, Any], data: UnrejectRequest
) -> dict[str, Any]:
    await _strict(request, UnrejectRequest)
    runtime: Runtime = state.runtime
    result = await runtime.admin.unreject(data.version, _who(request))
    _audit(request, "unreject", result)
    return result


@post(
    "/reload",
    responses={
        **ADMIN_ERRORS,
        202: ResponseSpec(
            dict[str, Any],
            description="status in_progress: the reconcile outlasted BLUEGREEN_ADMIN_RELOAD_WAIT_S "
            "and goes on",
        ),
    },
    status_code=200,
    summary="Reconcile with the registry now",
)
async def reload(state: State, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    runtime: Runtime = state.runtime
    result = await runtime.controller.reload(runtime.settings.admin.reload_wait_s)
    body = result.as_dict()
    _audit(request, "reload", body)
    return Response(body, status_code=202 if result.status is ReconcileStatus.IN_PROGRESS else 200)


@put(
    "/canary",
    responses=ADMIN_ERRORS,
    status_code=200,
    summary="Set the canary share (percent) fleet-wide",
)
async def set_canary(
    state: State, request: Request[Any, Any, Any], data: CanaryRequest
) -> dict[str, Any]:
    await _strict(request, CanaryRequest)
    runtime: Runtime = state.runtime
    result = await runtime.admin.set_canary_percent(data.percent)
    _audit(request, "canary.set", result)
    return result


@post(
    "/canary/abort",
    responses=ADMIN_ERRORS,
    status_code=200,
    summary="Abort the canary and reject its version",
)
async def abort_canary(state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    runtime: Runtime = state.runtime
    result = await runtime.admin.abort_canary(_who(request))
    _audit(request, "canary.abort", result)
    return result


admin_router = Router(
    path="/admin",
    route_handlers=[
        slots,
        versions,
        promote,
        rollback,
        reject,
        unreject,
        reload,
        set_canary,
        abort_canary,
    ],
    guards=[require_admin],
    tags=["admin"],
    security=[{"bearerAuth": []}],
)
