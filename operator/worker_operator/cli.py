"""``tickwork-operator``: run the operator (it wraps kopf; ``kopf run`` is not needed).

    tickwork-operator                       # every namespace
    tickwork-operator -n team-a -n team-b   # only these namespaces

Defaults that depend on the pod (identity, Lease namespace) come from ``POD_NAME`` and
``POD_NAMESPACE`` (downward API) or the mounted ServiceAccount.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence

from worker_operator.constants import OPERATOR_NAME
from worker_operator.settings import OperatorSettings, default_identity, default_lease_namespace
from worker_runtime.durations import parse_duration

__all__ = ["OPERATOR_IMPORTS", "entrypoint", "main", "missing_operator_imports", "parse_args"]

EXIT_USAGE = 2

# What the `operator` extra brings, as import names (tests/unit/test_packaging.py checks
# them against pyproject's extra). `pip install tickwork` alone installs this command too.
OPERATOR_IMPORTS = ("kopf", "aiohttp", "kubernetes_asyncio", "yaml")
INSTALL_HINT = "pip install 'tickwork[operator]'"


def missing_operator_imports() -> list[str]:
    """The packages of the `operator` extra that cannot be imported here."""
    return [name for name in OPERATOR_IMPORTS if importlib.util.find_spec(name) is None]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=OPERATOR_NAME,
        description="Reconcile tickwork.dev BackgroundWorkers into Deployments.",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="serve this namespace (repeat, or comma-separate); default: all namespaces",
    )
    parser.add_argument("--all-namespaces", "-A", action="store_true", help="serve every namespace")
    parser.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG, in-cluster")
    parser.add_argument("--http-host", default="0.0.0.0", help="address of the probes/metrics")
    parser.add_argument(
        "--http-port", type=int, default=8080, help="/healthz, /readyz, /metrics (0: off)"
    )
    parser.add_argument("--resync-interval", type=_duration, default="5m")
    parser.add_argument(
        "--degraded-recheck",
        type=_duration,
        default="15s",
        help="look at a Degraded worker again after this long (then twice as long each time)",
    )
    parser.add_argument(
        "--degraded-recheck-max",
        type=_duration,
        default="5m",
        help="the longest wait between two looks at a Degraded worker",
    )
    parser.add_argument(
        "--status-refresh",
        type=_duration,
        default="30s",
        help="read a worker's status document from one of its Ready pods at least this often",
    )
    parser.add_argument(
        "--status-timeout",
        type=_duration,
        default="2s",
        help="give up one read of a pod's status document after this long",
    )
    parser.add_argument(
        "--status-backoff-max",
        type=_duration,
        default="5m",
        help="the longest wait before asking pods that did not answer again",
    )
    parser.add_argument(
        "--progress-deadline",
        type=_duration,
        default="10m",
        help="the Deployments' progressDeadlineSeconds",
    )
    parser.add_argument(
        "--check-secret-references",
        action="store_true",
        help="report a missing Redis Secret at once (needs `get` on secrets; metadata only)",
    )
    election = parser.add_mutually_exclusive_group()
    election.add_argument(
        "--leader-election", dest="leader_election", action="store_true", default=True
    )
    election.add_argument("--no-leader-election", dest="leader_election", action="store_false")
    parser.add_argument(
        "--leader-election-namespace",
        default=None,
        help="the Lease's namespace; default: the pod's (required outside a pod)",
    )
    parser.add_argument("--leader-election-id", default=OPERATOR_NAME, help="the Lease's name")
    parser.add_argument("--lease-duration", type=_duration, default="15s")
    parser.add_argument("--renew-deadline", type=_duration, default="10s")
    parser.add_argument("--retry-period", type=_duration, default="2s")
    parser.add_argument("--identity", default=None, help="default: $POD_NAME or host name")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info"
    )
    return parser


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> tuple[OperatorSettings, str | None]:
    """Settings from flags (``SystemExit(2)`` with one line on a mistake)."""
    parser = _build_parser()
    args = parser.parse_args(list(argv))
    namespaces = tuple(
        dict.fromkeys(ns.strip() for item in args.namespace for ns in item.split(",") if ns.strip())
    )
    if args.all_namespaces and namespaces:
        parser.error("--all-namespaces and --namespace exclude each other")
    lease_namespace = args.leader_election_namespace or default_lease_namespace(env)
    if args.leader_election and lease_namespace is None:
        parser.error(
            "--leader-election-namespace is required outside a pod: every operator of a "
            "cluster must use the same Lease (the Helm chart's is in its release namespace, "
            "e.g. tickwork-system), or pass --no-leader-election"
        )
    try:
        settings = OperatorSettings(
            namespaces=namespaces,
            http_host=args.http_host,
            http_port=args.http_port,
            resync_interval_seconds=args.resync_interval,
            degraded_recheck_seconds=args.degraded_recheck,
            degraded_recheck_max_seconds=args.degraded_recheck_max,
            status_refresh_seconds=args.status_refresh,
            status_timeout_seconds=args.status_timeout,
            status_backoff_max_seconds=args.status_backoff_max,
            progress_deadline_seconds=max(1, round(args.progress_deadline)),
            check_secret_references=args.check_secret_references,
            leader_election=args.leader_election,
            lease_name=args.leader_election_id,
            lease_namespace=lease_namespace or "default",
            lease_duration_seconds=args.lease_duration,
            renew_deadline_seconds=args.renew_deadline,
            retry_period_seconds=args.retry_period,
            identity=args.identity or default_identity(env),
            log_format=args.log_format,
            log_level=args.log_level.upper(),
        )
    except ValueError as exc:
        parser.error(str(exc))
    return settings, args.kubeconfig


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    missing = missing_operator_imports()
    if missing:
        sys.stderr.write(
            f"{OPERATOR_NAME}: error: the operator needs {', '.join(missing)}, which a plain "
            f"`pip install tickwork` leaves out; install the extra: {INSTALL_HINT}\n"
        )
        return EXIT_USAGE
    # Imported here, not at the top: without the extra, the line above is all a user sees.
    from worker_operator.handlers import configure_logging
    from worker_operator.running import run

    arguments = list(sys.argv[1:] if argv is None else argv)
    environment = os.environ if env is None else env
    settings, kubeconfig = parse_args(arguments, environment)
    configure_logging(settings)
    return asyncio.run(run(settings, kubeconfig=kubeconfig))


def entrypoint() -> None:
    sys.exit(main())
