"""The peers of the side-by-side bench: where `make bench-peers` installed each (mk/bench.mk
computes the same paths from bench/peers.env), and how to start each system as real processes.

Every system's job records its own start (bench/recording.py) into one file; the harness
(bench/harness.py) reads the file and Redis' ``INFO commandstats``. Tickwork is started only
through its public interface, the ``tickwork run`` command (so the bench measures whatever
runtime is installed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import REPO
from tests.support.real_node import read_env_file

TICKWORK = Path(sys.executable).with_name("tickwork")
#: What the worker image installs (``tickwork run`` in the bench runs with just these).
RUNTIME_LOCK = REPO / "images" / "locks" / "worker.txt"
CACHE = Path(
    os.environ.get("TICKWORK_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tickwork"
)
BENCH_CACHE = CACHE / "bench"


VERSIONS = read_env_file(REPO / "bench" / "peers.env")
CLUSTER_VERSIONS = read_env_file(REPO / "hack" / "versions.env")
VENVS = {
    "apscheduler3": BENCH_CACHE / f"apscheduler-{VERSIONS['APSCHEDULER3_VERSION']}",
    "apscheduler4": BENCH_CACHE / f"apscheduler-{VERSIONS['APSCHEDULER4_VERSION']}",
    "redbeat": BENCH_CACHE
    / f"celery-{VERSIONS['CELERY_VERSION']}-redbeat-{VERSIONS['REDBEAT_VERSION']}",
    "arq": BENCH_CACHE / f"arq-{VERSIONS['ARQ_VERSION']}",
    "py-spy": BENCH_CACHE / f"py-spy-{VERSIONS['PY_SPY_VERSION']}",
    # named by the lock's sha256, as mk/bench.mk names it
    "tickwork-runtime": BENCH_CACHE
    / f"tickwork-runtime-{hashlib.sha256(RUNTIME_LOCK.read_bytes()).hexdigest()[:12]}",
}


GO_BASELINE_SOURCE = REPO / "bench" / "baselines" / "go-reconciler"


def go_baseline_path() -> Path:
    """Where `make bench-go-baseline` builds the Go baseline: named by its source's hash
    (the sha256 of go.mod, go.sum and main.go, as mk/bench.mk computes it)."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((GO_BASELINE_SOURCE / name).read_bytes())
    return BENCH_CACHE / f"go-reconciler-{digest.hexdigest()[:12]}" / "go-reconciler"


def venv_bin(name: str, command: str) -> Path:
    path = VENVS[name] / "bin" / command
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make bench-peers`")
    return path


def missing_peers() -> list[str]:
    return [name for name, venv in VENVS.items() if not (venv / ".installed").exists()]


@dataclass
class Process:
    """One process of a system under test; ``replica`` is what its runs record."""

    replica: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.args, cwd=REPO, env=self.env, stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, *, timeout: float = 30) -> int | None:
        """SIGTERM, then SIGKILL (of its whole process group) if it does not exit in time."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        with contextlib.suppress(ProcessLookupError):  # a Celery process's children go too
            os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.returncode


@dataclass(frozen=True)
class Settings:
    """The settings every system of one run shares (they are written to RESULTS.md)."""

    redis_url: str
    record: Path
    logs: Path
    lease_ttl_seconds: float = 5.0  # Tickwork's --lease-ttl and RedBeat's lock timeout
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **more: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKWORK_", "BENCH_"))}
        env.update(
            PYTHONPATH=str(REPO), BENCH_RECORD=str(self.record), BENCH_REDIS_URL=self.redis_url,
            PYTHONDONTWRITEBYTECODE="1",
        )  # fmt: skip
        env.update(self.extra_env)
        env.update(more)
        return env


def _period_arg(period: float) -> str:
    return f"{round(period * 1000)}ms"


def tickwork(
    settings: Settings, replica: str, *, period: float, workers: int = 1, redis: bool = True
) -> Process:
    """``tickwork run`` with one bench worker (``--period``) or WORKERS distinct ones at 1 s,
    from the venv with only the worker image's dependencies (this tree's code on PYTHONPATH)."""
    if workers == 1:
        names = ["bench.peers.tickwork_bench:Bench", "--period", _period_arg(period)]
    else:
        names = [f"bench.peers.tickwork_bench:Bench{i:04d}" for i in range(workers)]
    ttl = f"{settings.lease_ttl_seconds:g}s"
    runtime = [str(venv_bin("tickwork-runtime", "python")), "-m", "worker_runtime"]
    args = [*runtime, "run", *names, "--replica-id", replica, "--metrics-port", "0",
            "--lease-ttl", ttl, "--log-level", "warning"]  # fmt: skip
    if redis:
        args += ["--redis-url", settings.redis_url]
    return Process(replica, args, settings.env(), settings.logs / f"tickwork-{replica}.log")


def apscheduler3(settings: Settings, replica: str, *, period: float, jobs: int = 1) -> Process:
    script = REPO / "bench" / "peers" / "aps3_bench.py"
    args = [str(venv_bin("apscheduler3", "python")), str(script), f"{period:g}", str(jobs), replica]
    return Process(replica, args, settings.env(), settings.logs / f"aps3-{replica}.log")


def apscheduler4(settings: Settings, replica: str, *, period: float, jobs: int = 1) -> Process:
    script = REPO / "bench" / "peers" / "aps4_bench.py"
    args = [str(venv_bin("apscheduler4", "python")), str(script), f"{period:g}", str(jobs), replica]
    return Process(replica, args, settings.env(), settings.logs / f"aps4-{replica}.log")


def _celery_env(settings: Settings, replica: str, period: float) -> dict[str, str]:
    return settings.env(
        BENCH_REPLICA=replica, BENCH_PERIOD=f"{period:g}",
        BENCH_LOCK_SECONDS=f"{settings.lease_ttl_seconds:g}",
    )  # fmt: skip


def redbeat_worker(settings: Settings, *, period: float) -> Process:
    args = [str(venv_bin("redbeat", "celery")), "-A", "bench.peers.celery_bench", "worker",
            "--pool", "solo", "--concurrency", "1", "--loglevel", "warning", "--without-gossip",
            "--without-mingle", "--without-heartbeat", "--hostname", "bench-worker@%h"]  # fmt: skip
    env = _celery_env(settings, "worker", period)
    return Process("worker", args, env, settings.logs / "celery-worker.log")


def redbeat_beat(settings: Settings, replica: str, *, period: float) -> Process:
    """A beat process; its runs record ``replica`` through the worker (BENCH_REPLICA is the
    worker's), so the harness tells beats apart by which one holds ``redbeat::lock``."""
    args = [str(venv_bin("redbeat", "celery")), "-A", "bench.peers.celery_bench", "beat",
            "-S", "redbeat.RedBeatScheduler", "--loglevel", "warning",
            "--schedule", str(settings.logs / f"beat-{replica}.db"),
            "--pidfile", ""]  # fmt: skip
    env = _celery_env(settings, replica, period)
    return Process(replica, args, env, settings.logs / f"celery-beat-{replica}.log")


def arq_worker(settings: Settings, replica: str) -> Process:
    args = [str(venv_bin("arq", "arq")), "bench.peers.arq_bench.WorkerSettings"]
    env = settings.env(BENCH_REPLICA=replica)
    return Process(replica, args, env, settings.logs / f"arq-{replica}.log")
