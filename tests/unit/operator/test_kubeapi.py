"""Error classification and retries of the Kubernetes I/O layer (no network)."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from typing import Any, ClassVar

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from worker_operator.kubeapi import (
    MAX_CONNECTIONS,
    ApiError,
    Forbidden,
    KubeApi,
    NotFound,
    Rejected,
    RetryPolicy,
    TransientApiError,
    classify,
)

FAST = RetryPolicy(attempts=4, initial_delay_seconds=0.001, max_delay_seconds=0.002)


def api_exception(status: int, message: str = "boom", headers: dict[str, str] | None = None):
    exc = ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": message})
    exc.headers = headers
    return exc


@pytest.mark.parametrize(
    ("status", "kind", "transient"),
    [
        (404, NotFound, False),
        (403, Forbidden, False),
        (401, Forbidden, False),
        (422, Rejected, False),
        (400, Rejected, False),
        (409, ApiError, True),
        (429, ApiError, True),
        (500, ApiError, True),
        (503, ApiError, True),
    ],
)
def test_api_errors_are_classified_by_status(status: int, kind: type, transient: bool) -> None:
    error = classify(api_exception(status, "the server said no"))

    assert type(error) is kind
    assert error.transient is transient
    assert error.message == "the server said no"


def test_network_failures_and_timeouts_are_transient() -> None:
    lost = classify(aiohttp.ClientConnectionError("connection reset"))
    slow = classify(TimeoutError())

    assert lost.transient and lost.status == 0
    assert "cannot reach the API server" in lost.message
    assert slow.transient and "did not answer in time" in slow.message


def test_retry_after_is_honoured() -> None:
    error = classify(api_exception(429, "slow down", headers={"Retry-After": "3"}))

    assert error.retry_after_seconds == 3.0


class Calls:
    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.count = 0

    async def __call__(self) -> Any:
        self.count += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


async def test_transient_failures_are_retried_until_one_succeeds() -> None:
    api = KubeApi(object(), retry=FAST)
    calls = Calls(ApiError(503, "busy"), ApiError(0, "reset"), {"ok": True})

    result = await api.retrying(calls, what="GET /x")

    assert result == {"ok": True}
    assert calls.count == 3


async def test_retries_run_out_with_a_transient_api_error() -> None:
    api = KubeApi(object(), retry=FAST)
    calls = Calls(*[ApiError(503, "busy")] * 4)

    with pytest.raises(TransientApiError, match="busy"):
        await api.retrying(calls, what="GET /x")

    assert calls.count == 4


async def test_permanent_failures_are_not_retried() -> None:
    api = KubeApi(object(), retry=FAST)
    calls = Calls(Rejected(422, "invalid"), {"never": "reached"})

    with pytest.raises(Rejected):
        await api.retrying(calls, what="PATCH /x")

    assert calls.count == 1


class RecordingClient:
    """Stands in for kubernetes_asyncio's ApiClient: records what would be sent."""

    def __init__(self, response: Any = None, error: BaseException | None = None) -> None:
        self.response = response if response is not None else {}
        self.error = error
        self.calls: list[dict[str, Any]] = []

    async def call_api(self, path: str, method: str, **kwargs: Any) -> Any:
        self.calls.append({"path": path, "method": method, **kwargs})
        if self.error is not None:
            raise self.error
        return self.response

    async def close(self) -> None:
        pass


async def test_a_deployment_is_server_side_applied_with_the_fixed_field_manager() -> None:
    client = RecordingClient(response={"metadata": {"generation": 1}})
    api = KubeApi(client, retry=FAST)
    deployment = {"metadata": {"name": "w", "namespace": "team-a"}, "spec": {}}

    await api.apply_deployment(deployment)

    (call,) = client.calls
    assert call["method"] == "PATCH"
    assert call["path"] == "/apis/apps/v1/namespaces/team-a/deployments/w"
    assert call["header_params"]["Content-Type"] == "application/apply-patch+yaml"
    assert ("fieldManager", "tickwork-operator") in call["query_params"]
    assert ("force", "true") in call["query_params"]


async def test_a_secret_is_checked_by_its_metadata_only() -> None:
    client = RecordingClient(error=api_exception(404, 'secrets "redis" not found'))
    api = KubeApi(client, retry=FAST)

    exists = await api.secret_exists("team-a", "redis")

    (call,) = client.calls
    assert exists is False
    assert call["header_params"]["Accept"].startswith("application/json;as=PartialObjectMetadata")


async def test_status_is_merge_patched_on_the_status_subresource() -> None:
    client = RecordingClient(response={})
    api = KubeApi(client, retry=FAST)

    await api.patch_worker_status("team-a", "w", {"readyReplicas": 1})

    (call,) = client.calls
    assert (
        call["path"] == "/apis/tickwork.dev/v1alpha1/namespaces/team-a/backgroundworkers/w/status"
    )
    assert call["header_params"]["Content-Type"] == "application/merge-patch+json"
    assert call["body"] == {"status": {"readyReplicas": 1}}


def _kubeconfig(path: Any, *, server: str, token: str) -> Any:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


async def test_credentials_come_from_the_kubeconfig_given_not_from_the_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _kubeconfig(tmp_path / "env", server="https://other.example:6443", token="env-token")
    given = _kubeconfig(tmp_path / "given", server="https://given.example:6443", token="t0ken")
    monkeypatch.setenv("KUBECONFIG", str(other))

    async with await KubeApi.connect(kubeconfig=str(given)) as api:
        credentials = await api.credentials()

    assert (credentials.server, credentials.scheme, credentials.token) == (
        "https://given.example:6443",
        "Bearer",
        "t0ken",
    )
    assert "t0ken" not in repr(credentials)


def _answer(handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization", ""))
        _answer(self, b'{"kind": "APIVersions", "versions": ["v1"]}')

    def log_message(self, *args: object) -> None:
        pass


async def test_a_netrc_entry_for_the_api_server_neither_breaks_nor_slows_the_requests(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kubernetes_asyncio's session trusts the environment: aiohttp then looks up ~/.netrc
    # (in a thread) for every request, and an entry for the API server's host turns into
    # basic auth that clashes with the bearer token ("Cannot combine AUTHORIZATION header").
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        (tmp_path / ".netrc").write_text("machine 127.0.0.1 login someone password s3cret\n")
        monkeypatch.setenv("HOME", str(tmp_path))
        for name in ("NETRC", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        config = _kubeconfig(
            tmp_path / "config", server=f"http://127.0.0.1:{server.server_port}", token="t0ken"
        )
        async with await KubeApi.connect(kubeconfig=str(config)) as api:
            for _ in range(3):
                await api.request("GET", "/api")
    finally:
        server.shutdown()
        thread.join()
        server.server_close()

    assert _Recorder.seen == ["Bearer t0ken"] * 3


def test_path_segments_are_quoted_unless_every_character_is_plain() -> None:
    from worker_operator.kubeapi import worker_path

    assert worker_path("team-a", "passive.checker_1~") == (
        "/apis/tickwork.dev/v1alpha1/namespaces/team-a/backgroundworkers/passive.checker_1~"
    )
    assert worker_path("ns", "a/b c?") == (
        "/apis/tickwork.dev/v1alpha1/namespaces/ns/backgroundworkers/a%2Fb%20c%3F"
    )


class _Slow(http.server.BaseHTTPRequestHandler):
    lock = threading.Lock()
    open_now = 0
    most_at_once = 0

    def do_GET(self) -> None:
        cls = type(self)
        with cls.lock:
            cls.open_now += 1
            cls.most_at_once = max(cls.most_at_once, cls.open_now)
        time.sleep(0.05)
        with cls.lock:
            cls.open_now -= 1
        _answer(self, b"{}")

    def log_message(self, *args: object) -> None:
        pass


async def test_a_burst_of_requests_opens_no_more_than_max_connections_to_the_api_server(
    tmp_path: Any,
) -> None:
    # Each connection to the API server is a TLS session with its own buffers (~150 KiB):
    # a burst of reconciles must queue for a few of them, not open one each.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = _kubeconfig(
            tmp_path / "config", server=f"http://127.0.0.1:{server.server_port}", token="t0ken"
        )
        async with await KubeApi.connect(kubeconfig=str(config)) as api:
            answers = await asyncio.gather(
                *(api.request("GET", "/api") for _ in range(3 * MAX_CONNECTIONS))
            )
    finally:
        server.shutdown()
        thread.join()
        server.server_close()

    assert answers == [{}] * (3 * MAX_CONNECTIONS)
    assert 1 < _Slow.most_at_once <= MAX_CONNECTIONS


class _Watches(http.server.BaseHTTPRequestHandler):
    lock = threading.Lock()
    watching = 0
    expected = 0
    release = threading.Event()
    #: Set (on the test's loop) once ``expected`` watches are open.
    all_open: asyncio.Event
    loop: asyncio.AbstractEventLoop

    def do_GET(self) -> None:
        if "watch=true" not in self.path:
            _answer(self, b"{}")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.flush()
        cls = type(self)
        with cls.lock:
            cls.watching += 1
            if cls.watching == cls.expected:
                cls.loop.call_soon_threadsafe(cls.all_open.set)
        cls.release.wait(timeout=30)

    def log_message(self, *args: object) -> None:
        pass


async def test_open_watches_never_hold_up_the_other_requests(tmp_path: Any) -> None:
    # A Deployment that conflicts with its worker is watched until it changes: more such
    # watches than request slots must still leave every reconcile its connection.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Watches)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    watches: list[asyncio.Task[None]] = []

    async def watch(name: str) -> None:
        async for _ in api.watch_deployment("ns", name, resource_version="1"):
            pass

    try:
        config = _kubeconfig(
            tmp_path / "config", server=f"http://127.0.0.1:{server.server_port}", token="t0ken"
        )
        async with await KubeApi.connect(kubeconfig=str(config)) as api:
            _Watches.expected = MAX_CONNECTIONS + 1
            _Watches.loop, _Watches.all_open = asyncio.get_running_loop(), asyncio.Event()
            watches = [asyncio.create_task(watch(f"d{i}")) for i in range(_Watches.expected)]
            async with asyncio.timeout(10):
                await _Watches.all_open.wait()
                answer = await api.request("GET", "/api")
            _Watches.release.set()
            await asyncio.gather(*watches)
    finally:
        _Watches.release.set()
        for task in watches:
            task.cancel()
        server.shutdown()
        thread.join()
        server.server_close()

    assert answer == {}
