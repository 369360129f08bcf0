"""`make demo`, scripted: a bounded run on the real node, and what it printed.

The demo (hack/demo.py) reuses the session's cluster (it stops only a cluster it started)
and must leave nothing of its own behind: its namespace, its Prometheus, its state dir.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Tool

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DEMO_SECONDS = 75
TICK = re.compile(r"^\s+TICK\s+\S+\s+slot (?P<slot>\S+)\s+pod (?P<pod>\S+)\s+token (?P<token>\d+)")
TAKEOVER = re.compile(r"TAKEOVER (?P<old>\S+) -> (?P<new>\S+) in (?P<seconds>[\d.]+)s")


@pytest.mark.timeout(480)
def test_the_demo_shows_ticks_from_several_pods_a_takeover_and_prometheus_then_cleans_up(
    kubectl: Tool, kubeconfig: Path, real_node_ready: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=420,
        env={**os.environ, "DEMO_SECONDS": str(DEMO_SECONDS)},
        cwd=REPO,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, f"{out[-3000:]}\n{result.stderr[-3000:]}"
    ticks = [m.groupdict() for line in out.splitlines() if (m := TICK.match(line))]
    assert len(ticks) >= 10, out[-3000:]
    slots = [t["slot"] for t in ticks]
    assert len(slots) == len(set(slots)), f"a slot ran twice:\n{out}"
    assert len({t["pod"] for t in ticks}) >= 2, "the ticks came from one pod only"
    takeovers = [m for line in out.splitlines() if (m := TAKEOVER.search(line))]
    assert takeovers, out[-3000:]
    for m in takeovers:
        assert m["old"] != m["new"] and float(m["seconds"]) < 10, m.group(0)
    assert re.search(r"PROMQL lease holders: 1\b", out), out[-3000:]
    assert re.search(r"PROMQL ticks per pod: \S+=\d", out), out[-3000:]
    assert "demo stopped; nothing of it is left running" in out
    # Nothing of it is left: its namespace, its Prometheus, its state.
    ns = kubectl("get", "namespace", "tickwork-demo", check=False)
    assert ns.returncode != 0 and "NotFound" in ns.stderr, ns.stdout
    assert not (REPO / ".demo").exists()
    leftover = subprocess.run(
        ["pgrep", "-f", str(REPO / ".demo")], capture_output=True, text=True, check=False
    )
    assert leftover.stdout == "", f"processes of the demo still run: {leftover.stdout}"
