"""Log lines stay one JSON event each, whatever text a client manages to put in a field."""

from __future__ import annotations

import json
import logging

from bluegreen.api.request_id import _CURRENT
from bluegreen.logging import JsonFormatter


def test_line_breaking_characters_cannot_split_a_log_line() -> None:
    forged = 'x\u0085{"event": "admin.action", "actor": "root"}\u2028\u2029\r\n최고'
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "ev", None, None)
    record.fields = {"actor": forged}
    line = JsonFormatter().format(record)
    assert line.isascii()
    assert len(line.splitlines()) == 1
    assert json.loads(line)["actor"] == forged


def test_a_line_names_the_request_id_only_within_a_request() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "ev", None, None)
    assert "request_id" not in json.loads(JsonFormatter().format(record))
    token = _CURRENT.set(("req-1", True))
    try:
        assert json.loads(JsonFormatter().format(record))["request_id"] == "req-1"
    finally:
        _CURRENT.reset(token)
