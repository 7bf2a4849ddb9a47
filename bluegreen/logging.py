"""JSON-lines logging to stdout: one event per line, machine-readable fields first.

Call sites log an event name as the message and pass fields through `extra={"fields": {...}}`
(see `event`). A line logged while a request is handled carries its `request_id`
(`bluegreen.api.request_id`). Secrets never reach here: settings hide the admin token, and
request logs carry no headers.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from bluegreen.api.request_id import current_request_id

_CONFIGURED_FLAG = "_bluegreen_json"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 6),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            "pid": os.getpid(),
        }
        request_id = current_request_id()
        if request_id is not None:
            payload["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        # ASCII-safe: U+0085, U+2028 and U+2029 written raw split a line for many log readers,
        # so a client-chosen string could forge a second event.
        return json.dumps(payload, ensure_ascii=True, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Install the JSON handler on the root logger (idempotent across app factories)."""
    # MLflow installs its own plain-text handler on import unless told not to; its records
    # should reach our JSON handler instead. Warnings become log records too.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    logging.captureWarnings(True)
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not any(getattr(h, _CONFIGURED_FLAG, False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        setattr(handler, _CONFIGURED_FLAG, True)
        root.handlers = [handler]
    # Libraries that log chattily at INFO drown the lifecycle events operators look for.
    for noisy in ("alembic", "mlflow", "urllib3", "httpx", "botocore", "git", "py.warnings"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # Uvicorn's access log duplicates our sampled request log in a non-JSON format.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        uv = logging.getLogger(name)
        uv.handlers = []
        uv.propagate = True


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event: `event(log, "model.promoted", version=3, slot="blue")`."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})
