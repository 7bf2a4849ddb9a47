"""Open-file limits: the soft limit is raised to the hard one, and the connection cap fits."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bluegreen.edge.fd_limit import FD_RESERVE, connection_cap


@pytest.mark.parametrize(
    ("requested", "soft", "expected"),
    [
        (4096, None, 4096),  # unlimited
        (4096, 1_048_576, 4096),  # plenty of room
        (4096, 4096, 4096 - FD_RESERVE),  # the rest of the process keeps its descriptors
        (4096, 1024, 1024 - FD_RESERVE),
        (4096, 100, 50),  # a tiny limit keeps half for the process
        (10, 2, 1),
    ],
)
def test_connection_cap_leaves_descriptors_for_the_process(
    requested: int, soft: int | None, expected: int
) -> None:
    assert connection_cap(requested, soft) == expected


def test_raise_open_files_limit_lifts_soft_to_hard() -> None:
    # In a child: the test process keeps its own limits.
    script = (
        "import resource\n"
        "from bluegreen.edge.fd_limit import raise_open_files_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "now = raise_open_files_limit()\n"
        "print(now, *resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    returned, soft, hard = map(int, out)
    assert soft == hard == returned
