"""Realistic traffic for the bluegreen API.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000
    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --headless -u 20 -r 20 -t 1m

Korean movie reviews (short and long, emoji, mixed scripts), single and batch calls, one
`X-Request-ID` per simulated user so the canary's sticky split is exercised, and a strict check
of every response: status, body schema, label set, probabilities, and the `X-Model-Version` /
`X-Model-Slot` headers agreeing with the body.

Self-contained on purpose: the compose `loadtest` profile mounts only this directory into the
stock Locust image, so nothing here imports bluegreen.

Environment (all optional):
  LOADTEST_TEXTS     a texts file: one text per line, or an NSMC-style .tsv[.gz] (text column);
                     default: texts_ko.txt next to this file
  LOADTEST_RPS_USER  per-user request rate (constant throughput); default: think time 0.5-2 s
  LOADTEST_RECORD    write one CSV row per request here (the swap-under-load runner reads it):
                     t_end,latency_ms,kind,status,ok,version,slot,user,error,server_ms
                     (server_ms: the response's Server-Timing app duration; empty when absent)
  LOADTEST_BATCH_MAX largest batch to send (default 32; keep <= BLUEGREEN_MAX_BATCH)
  LOADTEST_V2_MODEL  the served model's name: also send Open Inference Protocol (V2) requests,
                     JSON and binary tensor data, checked as strictly; unset: none are sent
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import random
import struct
import time
import uuid
from pathlib import Path
from typing import Any

from locust import between, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser

LABELS = frozenset({"부정", "중립/복합", "긍정"})
SLOTS = frozenset({"blue", "green"})
HERE = Path(__file__).resolve().parent
BATCH_MAX = int(os.environ.get("LOADTEST_BATCH_MAX", "32"))
V2_MODEL = os.environ.get("LOADTEST_V2_MODEL") or None
V2_LABEL_ORDER = ("부정", "중립/복합", "긍정")
"""The column order of the V2 `probabilities` output (the model metadata's `labels`)."""
LONG_MIN_CHARS = 400
"""Longer than the server's inline threshold (300), so the executor path is exercised too."""


def load_texts(source: str | None = None) -> list[str]:
    path = Path(source or os.environ.get("LOADTEST_TEXTS") or HERE / "texts_ko.txt")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    content = raw.decode("utf-8")
    texts: list[str] = []
    if ".tsv" in path.suffixes:
        reader = csv.reader(io.StringIO(content), delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        column = header.index("text") if "text" in header else len(header) - 1
        texts = [row[column] for row in reader if len(row) > column]
    else:
        texts = [line for line in content.splitlines() if not line.startswith("#")]
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise RuntimeError(f"no texts in {path}")
    return texts


TEXTS = load_texts()


def long_text(rng: random.Random) -> str:
    """A long review: several real ones joined, 400-2000 characters."""
    target = rng.randint(LONG_MIN_CHARS, 2000)
    parts: list[str] = []
    size = 0
    while size < target:
        part = rng.choice(TEXTS)
        parts.append(part)
        size += len(part) + 1
    return " ".join(parts)[:target]


class Recorder:
    """Appends one CSV row per request when LOADTEST_RECORD is set (cheap, buffered)."""

    def __init__(self, path: str | None) -> None:
        self._file = open(path, "w", buffering=1 << 16, encoding="utf-8") if path else None  # noqa: SIM115
        if self._file is not None:
            self._file.write("t_end,latency_ms,kind,status,ok,version,slot,user,error,server_ms\n")

    def write(  # noqa: PLR0917 - one CSV row, in column order
        self, kind: str, latency_ms: float, status: int, ok: bool,
        version: str, slot: str, user: str, error: str = "", server_ms: str = "",
    ) -> None:  # fmt: skip
        if self._file is None:
            return
        error = error.replace(",", ";").replace("\n", " ")[:120]
        self._file.write(
            f"{time.time():.4f},{latency_ms:.3f},{kind},{status},{int(ok)},"
            f"{version},{slot},{user},{error},{server_ms}\n"
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None


RECORDER = Recorder(os.environ.get("LOADTEST_RECORD"))


@events.quitting.add_listener
def _close_recorder(**_: Any) -> None:
    RECORDER.close()


@events.test_stop.add_listener
def _flush_recorder(**_: Any) -> None:
    if RECORDER._file is not None:
        RECORDER._file.flush()


class ContractError(Exception):
    pass


def check_result(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise ContractError(f"{where}: not an object")
    sentiment, score, details = item.get("sentiment"), item.get("score"), item.get("details")
    if sentiment not in LABELS:
        raise ContractError(f"{where}: sentiment {sentiment!r} not a label")
    if not isinstance(details, dict) or set(details) != LABELS:
        raise ContractError(f"{where}: details keys {details!r}")
    values = list(details.values())
    if not all(isinstance(v, int | float) and 0.0 <= v <= 1.0 for v in values):
        raise ContractError(f"{where}: probability out of range")
    if not math.isclose(sum(values), 1.0, abs_tol=1e-3):
        raise ContractError(f"{where}: probabilities sum to {sum(values)}")
    if not isinstance(score, int | float) or not math.isclose(score, details[sentiment]):
        raise ContractError(f"{where}: score {score!r} is not details[sentiment]")
    if max(values) - details[sentiment] > 1e-9:
        raise ContractError(f"{where}: sentiment is not the most probable label")


def server_timing_ms(headers: Any) -> str:
    """The app's own duration from ``Server-Timing: app;dur=<ms>``, as written; "" if absent."""
    value = headers.get("Server-Timing") or headers.get("server-timing") or ""
    for metric in value.split(","):
        name, _, rest = metric.strip().partition(";")
        if name == "app" and rest.startswith("dur="):
            return rest[4:]
    return ""


def check_response(body: Any, headers: Any, n_texts: int | None) -> tuple[str, str]:
    """Validate one 200 body; returns (version, slot) from the headers."""
    version = headers.get("X-Model-Version") or headers.get("x-model-version")
    slot = headers.get("X-Model-Slot") or headers.get("x-model-slot")
    if not version:
        raise ContractError("X-Model-Version header missing")
    if slot not in SLOTS:
        raise ContractError(f"X-Model-Slot {slot!r}")
    if not isinstance(body, dict):
        raise ContractError("body is not an object")
    if str(body.get("model_version")) != version or body.get("model_slot") != slot:
        raise ContractError("headers and body disagree on version/slot")
    if n_texts is None:
        check_result(body, "body")
    else:
        results = body.get("results")
        if not isinstance(results, list) or len(results) != n_texts:
            raise ContractError(f"expected {n_texts} results")
        for index, item in enumerate(results):
            check_result(item, f"results[{index}]")
    return version, slot


def v2_request(texts: list[str], binary: bool) -> tuple[bytes, dict[str, str]]:
    """An OIP infer body; binary: the tensor data extension for the input and both outputs."""
    tensor: dict[str, Any] = {"name": "text", "shape": [len(texts)], "datatype": "BYTES"}
    if not binary:
        tensor["data"] = texts
        return json.dumps({"inputs": [tensor]}, ensure_ascii=False).encode(), {}
    raw = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}})
    return header.encode() + raw, {"Inference-Header-Content-Length": str(len(header))}


def v2_body(content: bytes, headers: Any) -> Any:
    """The response as JSON, binary outputs read back into `data`."""
    length = headers.get("Inference-Header-Content-Length") or headers.get(
        "inference-header-content-length"
    )
    if length is None:
        return json.loads(content)
    body = json.loads(content[: int(length)])
    offset = int(length)
    for output in body.get("outputs", []):
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            continue
        chunk, offset = content[offset : offset + size], offset + size
        if output.get("datatype") == "FP32":
            output["data"] = list(struct.unpack(f"<{size // 4}f", chunk))
        else:
            items, at = [], 0
            while at < len(chunk):
                (n,) = struct.unpack_from("<I", chunk, at)
                items.append(chunk[at + 4 : at + 4 + n].decode())
                at += 4 + n
            output["data"] = items
    if offset != len(content):
        raise ContractError("binary outputs do not fill the body")
    return body


def check_v2_response(body: Any, headers: Any, n_texts: int) -> tuple[str, str]:
    """Validate one V2 200 body; returns (version, slot) from the headers."""
    version = headers.get("X-Model-Version") or headers.get("x-model-version")
    slot = headers.get("X-Model-Slot") or headers.get("x-model-slot")
    if not version or slot not in SLOTS or not isinstance(body, dict):
        raise ContractError(f"version {version!r}, slot {slot!r}")
    if body.get("model_version") != version or (body.get("parameters") or {}).get("slot") != slot:
        raise ContractError("headers and body disagree on version/slot")
    outputs = {o.get("name"): o for o in body.get("outputs") or []}
    probs, labels = outputs.get("probabilities") or {}, outputs.get("label") or {}
    if probs.get("shape") != [n_texts, 3] or labels.get("shape") != [n_texts]:
        raise ContractError(f"shapes {probs.get('shape')} {labels.get('shape')}")
    data, names = probs.get("data") or [], labels.get("data") or []
    if len(data) != 3 * n_texts or len(names) != n_texts:
        raise ContractError("output data does not match the shapes")
    for i, name in enumerate(names):
        row = data[3 * i : 3 * i + 3]
        if not all(0.0 <= p <= 1.0 for p in row) or not math.isclose(sum(row), 1.0, abs_tol=1e-3):
            raise ContractError(f"row {i}: {row} is not a probability row")
        if name not in LABELS or row[V2_LABEL_ORDER.index(name)] < max(row):
            raise ContractError(f"row {i}: label {name!r} is not the most probable")
    return version, slot


def _wait_time() -> Any:
    rate = os.environ.get("LOADTEST_RPS_USER")
    if rate:
        return constant_throughput(float(rate))
    return between(0.5, 2.0)


class ReviewUser(FastHttpUser):
    """One client of the API; keeps one X-Request-ID for its whole life (canary stickiness)."""

    wait_time = _wait_time()
    # Fail fast instead of hanging the run; the server's own timeout is 10 s.
    network_timeout = 15.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        self.key = uuid.uuid4().hex
        self.rng = random.Random(self.key)
        self.headers = {"X-Request-ID": self.key, "Content-Type": "application/json"}

    def _post(
        self, path: str, payload: dict[str, Any] | bytes, kind: str, n_texts: int | None,
        v2_headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        started = time.perf_counter()
        if isinstance(payload, dict):
            payload = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = self.headers if v2_headers is None else {**self.headers, **v2_headers}
        with self.client.post(
            path, data=payload, headers=headers, name=kind, catch_response=True
        ) as response:
            latency_ms = (time.perf_counter() - started) * 1000
            status = response.status_code or 0
            version = slot = error = ""
            if status != 200:
                error = f"HTTP {status}: {(response.text or '')[:80]}"
            else:
                try:
                    if v2_headers is None:
                        version, slot = check_response(response.json(), response.headers, n_texts)
                    else:
                        body = v2_body(response.content or b"", response.headers)
                        version, slot = check_v2_response(body, response.headers, n_texts or 0)
                except (ContractError, ValueError, KeyError, TypeError, struct.error) as exc:
                    error = f"contract: {exc}"
            if error:
                response.failure(error)
            else:
                response.success()
            RECORDER.write(kind, latency_ms, status, not error, version, slot, self.key, error,
                           server_timing_ms(response.headers))  # fmt: skip

    @task(14)
    def single_short(self) -> None:
        self._post("/predict", {"text": self.rng.choice(TEXTS)}, "predict", None)

    @task(2)
    def single_long(self) -> None:
        self._post("/predict", {"text": long_text(self.rng)}, "predict_long", None)

    @task(3)
    def batch(self) -> None:
        n = self.rng.randint(2, BATCH_MAX)
        texts = [self.rng.choice(TEXTS) for _ in range(n)]
        if self.rng.random() < 0.2:
            texts[self.rng.randrange(n)] = long_text(self.rng)
        self._post("/predict/batch", {"texts": texts}, "predict_batch", n)

    if V2_MODEL:

        @task(2)
        def v2_json(self) -> None:
            self._v2(binary=False)

        @task(1)
        def v2_binary(self) -> None:
            self._v2(binary=True)

    def _v2(self, *, binary: bool) -> None:
        n = self.rng.randint(1, min(8, BATCH_MAX))
        content, headers = v2_request([self.rng.choice(TEXTS) for _ in range(n)], binary)
        kind = "v2_binary" if binary else "v2_json"
        self._post(f"/v2/models/{V2_MODEL}/infer", content, kind, n, headers)
