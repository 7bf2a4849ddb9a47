"""No admin route answers without the token over real HTTP; the token never reaches the log."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.fuzz.conftest import ADMIN, ADMIN_TOKEN
from tests.support.servers import AppServer

pytestmark = pytest.mark.integration


def admin_routes(app: AppServer) -> list[tuple[str, str]]:
    spec = httpx.get(f"{app.url}/schema/openapi.json", timeout=10).json()
    routes = [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if path.startswith("/admin")
    ]
    assert len(routes) >= 6, routes
    return routes


@pytest.mark.parametrize(
    "auth",
    [None, "Bearer", "Bearer wrong-token", f"Basic {ADMIN_TOKEN}", f"bearer {ADMIN_TOKEN}x",
     f"Bearer {ADMIN_TOKEN[:-1]}", "Bearer \u00e9\u00e9"],
)  # fmt: skip
def test_no_admin_route_without_the_token(fuzz_app: AppServer, auth: str | None) -> None:
    # bytes: httpx refuses non-ASCII str header values, a raw client sends them anyway
    headers = {"Authorization": auth.encode("utf-8")} if auth is not None else {}
    for method, path in admin_routes(fuzz_app):
        body = {"percent": 0} if path == "/admin/canary" else {}
        response = httpx.request(
            method, f"{fuzz_app.url}{path}", json=body, headers=headers, timeout=10
        )
        assert response.status_code == 401, (method, path, auth, response.status_code)
        assert response.headers.get("www-authenticate") == "Bearer"


def test_token_never_logged(fuzz_app: AppServer) -> None:
    wrong = {"Authorization": "Bearer not-the-token"}
    for headers in (ADMIN, wrong, {"Authorization": ADMIN_TOKEN}):
        httpx.get(f"{fuzz_app.url}/admin/slots", headers=headers, timeout=10)
        httpx.post(f"{fuzz_app.url}/admin/reload", headers=headers, timeout=30)
    log = fuzz_app.log_text()
    assert "admin.action" in log  # the calls above were logged...
    assert ADMIN_TOKEN not in log  # ...without the token
    assert "not-the-token" not in log
