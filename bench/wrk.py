"""wrk driver: POST JSON bodies from a Lua script, parse a JSON summary, account client CPU."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

_LUA_HEAD = """
local bodies = {
@BODIES@
}
local method = "@METHOD@"
local fresh = @FRESH@
local headers = { ["Content-Type"] = "application/json" }
local reqs = {}
local n = 0

init = function(args)
  -- A token of this run: a run lasts at least a second, so no two runs share a start second.
  local run = string.format("%x", os.time())
  if #bodies == 0 then
    reqs[1] = wrk.format(method, nil, {}, nil)
  else
    for i, body in ipairs(bodies) do
      headers["X-Request-ID"] = "wrk-" .. i
      if fresh then body = (body:gsub("@RUN@", run)) end
      reqs[i] = wrk.format(method, nil, headers, body)
    end
  end
end

request = function()
  n = n % #reqs + 1
  return reqs[n]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""


def lua_script(bodies: Sequence[str], method: str = "POST", *, fresh_per_run: bool = False) -> str:
    """Bodies are embedded as Lua long strings; none of them may contain `]==]`. With
    `fresh_per_run`, each wrk run replaces `@RUN@` in the bodies by a token of its own, so that
    texts one run sends are new to a server that saw the previous runs (its caches miss)."""
    literals = ",\n".join(f"[==[{body}]==]" for body in bodies if "]==]" not in body)
    return (
        _LUA_HEAD.replace("@BODIES@", literals)
        .replace("@METHOD@", method)
        .replace("@FRESH@", "true" if fresh_per_run else "false")
    )


def server_cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def run_wrk(
    url: str,
    script: Path,
    *,
    duration_s: float,
    connections: int = 16,
    threads: int = 1,
    server_pids: Sequence[int] = (),
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """One wrk run. Returns wrk's summary plus requests/s, client and server CPU seconds."""
    wrk = shutil.which("wrk") or "/usr/bin/wrk"
    args = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        str(script),
        url,
    ]
    cpu_before = server_cpu_seconds(server_pids)
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    cpu_after = server_cpu_seconds(server_pids)
    line = next((ln for ln in output.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {output[-2000:]}")
    result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    seconds = result["duration_us"] / 1e6
    errors = sum(
        result[k]
        for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
    )
    result.update(
        {
            "url": url,
            "connections": connections,
            "rps": round(result["requests"] / seconds, 1),
            "errors": errors,
            "p50_ms": result["p50_us"] / 1000,
            "p90_ms": result["p90_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000,
            "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "client_cpu_share": round((usage.ru_utime + usage.ru_stime) / wall, 3),
            "server_cpu_s": round(cpu_after - cpu_before, 3),
        }
    )
    result["server_cpu_ms_per_request"] = (
        round(1000 * result["server_cpu_s"] / result["requests"], 4) if result["requests"] else None
    )
    return result


def abba_rounds(
    urls: dict[str, str], pids: dict[str, int], lua: Path | Mapping[str, Path], *, a: str,
    b: str, duration: float, rounds: int, log: Any,
) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """Warm both servers, then `rounds` wrk runs each, in A B / B A order so that drift on the
    cores falls on both sides alike. One script for both sides, or one per side."""
    scripts = {kind: lua if isinstance(lua, Path) else lua[kind] for kind in (a, b)}
    for kind, url in urls.items():
        run_wrk(url, scripts[kind], duration_s=max(2.0, duration / 4))
    runs: dict[str, list[dict[str, Any]]] = {a: [], b: []}
    for r in range(rounds):
        for kind in (a, b) if r % 2 == 0 else (b, a):
            result = run_wrk(
                urls[kind], scripts[kind], duration_s=duration, server_pids=[pids[kind]]
            )
            runs[kind].append(result)
            log(f"  {kind:6s} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:.2f} ms  "
                f"p99 {result['p99_ms']:.2f} ms  errors {result['errors']}")  # fmt: skip
    return runs


def side_by_side(runs: dict[str, list[dict[str, Any]]], a: str, b: str) -> dict[str, Any]:
    """Medians per side, A/B ratios and the run-to-run spread the ratios are read against."""
    keys = ("rps", "p50_ms", "p99_ms", "errors", "server_cpu_ms_per_request")
    median = {
        kind: {key: float(statistics.median(r[key] for r in runs[kind])) for key in keys}
        for kind in (a, b)
    }
    # Run-to-run spread of one server against itself: the noise the ratio is read against.
    spread = max(
        (max(r["rps"] for r in runs[k]) - min(r["rps"] for r in runs[k])) / median[k]["rps"]
        for k in (a, b)
    )
    # Each round's two runs are adjacent in time: their ratio cancels drift on the cores.
    pairs = [x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b], strict=True)]
    ma, mb = median[a], median[b]
    return {
        "median": median,
        "ratios": {
            "rps": round(statistics.median(pairs), 3),
            "rps_of_medians": round(ma["rps"] / mb["rps"], 3),
            "p99": round(ma["p99_ms"] / mb["p99_ms"], 3),
            "server_cpu_per_request": round(
                ma["server_cpu_ms_per_request"] / mb["server_cpu_ms_per_request"], 3
            ),
        },
        "rps_spread": round(spread, 3),
    }
