"""tickwork-operator's command line: namespaces, durations, defaults from the pod."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker_operator.cli import parse_args
from worker_operator.settings import default_lease_namespace

ENV = {"POD_NAME": "tickwork-operator-7d9-abc", "POD_NAMESPACE": "tickwork-system"}


def test_without_namespaces_every_namespace_is_served() -> None:
    settings, kubeconfig = parse_args([], ENV)

    assert settings.clusterwide
    assert settings.leader_election
    assert settings.identity == "tickwork-operator-7d9-abc"
    assert settings.lease_namespace == "tickwork-system"
    assert settings.http_port == 8080
    assert settings.resync_interval_seconds == 300
    assert kubeconfig is None


def test_namespaces_can_be_repeated_or_comma_separated() -> None:
    settings, _ = parse_args(["-n", "team-a,team-b", "--namespace", "team-c", "-n", "team-a"], ENV)

    assert settings.namespaces == ("team-a", "team-b", "team-c")
    assert not settings.clusterwide


def test_durations_are_written_like_everywhere_else() -> None:
    settings, _ = parse_args(
        [
            "--resync-interval",
            "1m30s",
            "--degraded-recheck",
            "500ms",
            "--progress-deadline",
            "2m",
            "--lease-duration",
            "6s",
            "--renew-deadline",
            "4s",
            "--retry-period",
            "1s",
        ],
        ENV,
    )

    assert settings.resync_interval_seconds == 90
    assert settings.degraded_recheck_seconds == 0.5
    assert settings.progress_deadline_seconds == 120
    assert (settings.lease_duration_seconds, settings.renew_deadline_seconds) == (6, 4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--resync-interval", "soon"], "'soon' is not a duration"),
        (["--lease-duration", "5s", "--renew-deadline", "10s"], "retry period < renew deadline"),
        (["-A", "-n", "team-a"], "exclude each other"),
        (["--http-port", "70000"], "HTTP port 70000"),
        (["--log-format", "xml"], "invalid choice: 'xml'"),
    ],
)
def test_a_mistake_is_one_line_and_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args(argv, ENV)

    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert message in err
    assert len(err.strip().splitlines()) <= 3  # usage line(s) and the error, no traceback


def test_the_identity_falls_back_to_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "laptop")

    settings, _ = parse_args(["--leader-election-namespace", "ops"], {})

    assert settings.identity.startswith("laptop-")
    assert settings.lease_namespace == "ops"


def test_the_lease_namespace_is_the_pods_own(tmp_path: Path) -> None:
    mounted = tmp_path / "namespace"
    mounted.write_text("tickwork-system\n")

    assert default_lease_namespace({"POD_NAMESPACE": "from-env"}, sa_file=mounted) == "from-env"
    assert default_lease_namespace({}, sa_file=mounted) == "tickwork-system"
    assert default_lease_namespace({}, sa_file=tmp_path / "missing") is None


def test_outside_a_pod_the_lease_namespace_must_be_given(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("worker_operator.settings._SERVICE_ACCOUNT_NAMESPACE", tmp_path / "missing")

    with pytest.raises(SystemExit) as caught:
        parse_args([], {})
    settings, _ = parse_args(["--leader-election-namespace", "tickwork-system"], {})
    unelected, _ = parse_args(["--no-leader-election"], {})

    assert caught.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert settings.lease_namespace == "tickwork-system"
    assert not unelected.leader_election
