"""`python -m bench.plain_uvicorn`: `bluegreen serve` on uvicorn's stock httptools protocol.

The baseline of the edge benchmark (`bench/edge_protocol.py`), with every other option the
same. Not for serving: it has none of the edge's bounds (head size and deadline, connection
cap, requests-in-flight cap).
"""

from __future__ import annotations

import argparse

from bluegreen.cli import serve

if __name__ == "__main__":
    args = argparse.Namespace(host=None, port=None, workers=None)
    raise SystemExit(serve(args, http="httptools"))
