"""Open Inference Protocol V2 infer (`POST /v2/models/{name}/infer`, JSON tensor data) vs
`/predict` on the same server: one app, one model, the two routes driven by wrk in turn, ABBA
interleaved so that drift on the shared cores hits both alike. Both routes run the same
predictor, router, limits and contract checks; what differs is the wire format and its codec.

Three cases, each side by side:

- one text per request, the same texts over and over (after the first pass the model's per-text
  cache answers, as in the /predict rows of section 1);
- one text per request, every text new to the model: each wrk run makes its texts its own
  (`lua_script(fresh_per_run=True)`) and cycles through more of them than the cache holds, so
  every lookup misses;
- a batch of 8 texts per request (`/predict/batch` against a V2 tensor of shape [8]), texts new
  per run in the same way.

    python -m bench.v2_throughput --duration 4 --rounds 2   # this section alone, small sizes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.wrk import abba_rounds, lua_script, side_by_side
from tests.support.servers import AppServer

ROUTES = {"v2": "V2 infer, JSON tensor data", "predict": "/predict"}
BATCH = 8
CASES = {
    "single_repeated": "1 text, repeated texts (cache hits)",
    "single_unseen": "1 text, unseen texts",
    "batch_unseen": f"batch of {BATCH}, unseen texts",
}


def v2_body(texts: list[str]) -> str:
    tensor = {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}
    return json.dumps({"inputs": [tensor]}, ensure_ascii=False)


def predict_body(texts: list[str]) -> str:
    if len(texts) == 1:
        return json.dumps({"text": texts[0]}, ensure_ascii=False)
    return json.dumps({"texts": texts}, ensure_ascii=False)


def case_texts(case: str, texts: list[str], unseen: int) -> list[list[str]]:
    """The texts of each request body. Unseen texts carry the run's `@RUN@` token and an index,
    so no two in a run, nor in two runs, are the same."""
    if case == "single_repeated":
        return [[t] for t in texts]
    size = 1 if case == "single_unseen" else BATCH
    bodies = unseen if size == 1 else max(1, unseen // size)
    return [
        [f"{texts[(i * size + j) % len(texts)]} ({i * size + j}-@RUN@)" for j in range(size)]
        for i in range(bodies)
    ]


def _check(base: str, model_name: str, batch: list[str]) -> None:
    """Both routes answer the same probabilities for the same texts before they are timed."""
    batch = [t.replace("@RUN@", "check") for t in batch]
    v2 = httpx.post(f"{base}/v2/models/{model_name}/infer", content=v2_body(batch).encode(),
                    headers={"Content-Type": "application/json"}, timeout=30)  # fmt: skip
    route = "/predict" if len(batch) == 1 else "/predict/batch"
    plain = httpx.post(f"{base}{route}", content=predict_body(batch).encode(),
                       headers={"Content-Type": "application/json"}, timeout=30)  # fmt: skip
    v2.raise_for_status()
    plain.raise_for_status()
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    answers = [plain.json()] if len(batch) == 1 else plain.json()["results"]
    labels = [a["sentiment"] for a in answers]
    if outputs["label"]["data"] != labels:
        raise RuntimeError(f"V2 and {route} disagree: {outputs['label']['data']} vs {labels}")


@contextlib.contextmanager
def _app(out: Path, tracking_uri: str, env: dict[str, str]) -> Iterator[AppServer]:
    app = AppServer(out / "app-v2-throughput", tracking_uri, env=env)
    with app.running(timeout=180):
        yield app


def run(
    out: Path, tracking_uri: str, env: dict[str, str], texts: list[str], *,
    duration: float, rounds: int, log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    from bluegreen.model.inference import CACHE_SIZE

    unseen = 2 * CACHE_SIZE  # cycled in order, twice the cache: each text is evicted before reuse
    model_name = env["BLUEGREEN_MODEL_NAME"]
    scripts = out / "wrk"
    scripts.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    with _app(out, tracking_uri, env) as app:
        routes = {"v2": f"{app.url}/v2/models/{model_name}/infer"}
        for case, label in CASES.items():
            log(f"  {label}")
            bodies = case_texts(case, texts, unseen)
            fresh = case != "single_repeated"
            lua = {
                "v2": scripts / f"v2-{case}.lua",
                "predict": scripts / f"predict-{case}.lua",
            }
            lua["v2"].write_text(lua_script([v2_body(b) for b in bodies], fresh_per_run=fresh))
            lua["predict"].write_text(
                lua_script([predict_body(b) for b in bodies], fresh_per_run=fresh)
            )
            _check(app.url, model_name, bodies[0])
            plain = f"{app.url}/predict" if case != "batch_unseen" else f"{app.url}/predict/batch"
            runs = abba_rounds(
                {**routes, "predict": plain}, {"v2": app.pid, "predict": app.pid}, lua,
                a="v2", b="predict", duration=duration, rounds=rounds, log=log,
            )  # fmt: skip
            compared = side_by_side(runs, "v2", "predict")
            texts_per_request = BATCH if case == "batch_unseen" else 1
            results[case] = {
                "runs": runs,
                **compared,
                "texts_per_request": texts_per_request,
                "bodies": len(bodies),
            }
            log(f"  V2 / /predict requests/s: {compared['ratios']['rps']}× "
                f"(spread {compared['rps_spread']:.1%})")  # fmt: skip
    return {
        "cases": results,
        "unseen_texts_per_run": unseen,
        "duration_s": duration,
        "rounds": rounds,
        "connections": 16,
    }


def main(argv: list[str] | None = None) -> int:
    """This section alone, on a registry of its own with the keyword test model."""
    from bench.run_all import MODEL_NAME, REPO, ModelUnderTest, log, texts, trust_code

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keyword", action="store_true", help="use the keyword test model")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or REPO / "results" / "bench" / time.strftime("v2-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    model = ModelUnderTest(REPO / "results" / "bench-cache", force_keyword=args.keyword)
    try:
        model.start()
        env = {"BLUEGREEN_MODEL_NAME": MODEL_NAME, "BLUEGREEN_LOG_LEVEL": "WARNING",
               "BLUEGREEN_TRUST_MODEL_CODE": trust_code(model)}  # fmt: skip
        result = run(out, model.url, env, texts(), duration=args.duration, rounds=args.rounds,
                     log=log)  # fmt: skip
    finally:
        model.stop()
    (out / "v2_throughput.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    log(f"wrote {out / 'v2_throughput.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
