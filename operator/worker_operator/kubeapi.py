"""The Kubernetes I/O layer: asynchronous calls with plain dicts in and out.

``KubeApi`` wraps one ``kubernetes_asyncio`` ``ApiClient`` (kubeconfig or in-cluster
credentials, token refresh). Every call has a timeout; transient failures (409 conflicts,
429, 5xx, a lost connection, a timeout) are retried with exponential backoff and jitter, and
only then raised as ``TransientApiError``. Other failures are raised at once, classified:
``NotFound``, ``Forbidden`` (RBAC), ``Rejected`` (the server refused the object: 400/422).
Nothing here knows kopf.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from worker_operator.constants import FIELD_MANAGER, GROUP, PLURAL, VERSION
from worker_operator.metrics import OperatorMetrics

__all__ = [
    "ApiError",
    "Credentials",
    "CredentialsError",
    "Forbidden",
    "KubeApi",
    "NamespaceTerminating",
    "NotFound",
    "Rejected",
    "RetryPolicy",
    "TransientApiError",
    "classify",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"
_JSON = "application/json"
_METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_TRANSIENT_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
#: Connections to the API server at most for requests (the client's default is 100): in a
#: burst of new workers every reconcile in flight held one (about 150 KiB of TLS buffers
#: each) and paid a TLS handshake; requests beyond these wait for a free connection. Watches
#: have a client (and connections) of their own, so they never take the last of these.
MAX_CONNECTIONS = 16


class ApiError(Exception):
    """A Kubernetes API call failed; ``message`` is the server's own explanation."""

    def __init__(self, status: int, message: str, *, retry_after_seconds: float | None = None):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.retry_after_seconds = retry_after_seconds

    @property
    def transient(self) -> bool:
        return self.status == 0 or self.status in _TRANSIENT_STATUSES


class CredentialsError(ValueError):
    """No usable kubeconfig or in-cluster credentials: one line for the user."""


class NotFound(ApiError):
    pass


class Forbidden(ApiError):
    """401/403: the operator's credentials or RBAC rules do not allow the call."""


class NamespaceTerminating(ApiError):
    """403 from the namespace lifecycle check: the namespace is being deleted (not RBAC)."""


class Rejected(ApiError):
    """400/422 (and other 4xx): the server refused the request; retrying the same fails."""


class TransientApiError(ApiError):
    """Retries ran out on a failure that may pass (conflict, throttling, 5xx, network)."""


def _server_status(exc: ApiException) -> tuple[str, dict[str, Any]]:
    """The server's message and its ``Status`` object (empty when the body is not one)."""
    raw: object = exc.body
    body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if isinstance(body, str) and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            return body.strip()[:2000], {}
        if isinstance(parsed, dict) and parsed.get("message"):
            return str(parsed["message"]), parsed
    return str(exc.reason or "no message"), {}


def _causes(status: Mapping[str, Any]) -> set[str]:
    details = status.get("details") or {}
    return {str(c.get("type") or c.get("reason")) for c in details.get("causes") or ()}


def _retry_after(exc: ApiException) -> float | None:
    headers: Any = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def classify(exc: BaseException) -> ApiError:
    """Map a client exception (or a network failure) to an ``ApiError`` subclass."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message, body = _server_status(exc)
        if status == 404:
            return NotFound(status, message)
        if status == 403 and "NamespaceTerminating" in _causes(body):
            return NamespaceTerminating(status, message)
        if status in (401, 403):
            return Forbidden(status, message)
        if status == 0 or status in _TRANSIENT_STATUSES:
            return ApiError(status, message, retry_after_seconds=_retry_after(exc))
        return Rejected(status, message)
    if isinstance(exc, TimeoutError):
        return ApiError(0, "the API server did not answer in time")
    return ApiError(0, f"cannot reach the API server: {type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter for transient failures."""

    attempts: int = 5
    initial_delay_seconds: float = 0.2
    max_delay_seconds: float = 5.0
    request_timeout_seconds: float = 15.0

    def delay(self, attempt: int, *, hint_seconds: float | None = None) -> float:
        if hint_seconds is not None:
            return min(hint_seconds, self.max_delay_seconds)
        ceiling = min(self.max_delay_seconds, self.initial_delay_seconds * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """How ``KubeApi`` reaches the API server, for another client (kopf's watches) to use."""

    server: str
    ca_path: str | None
    insecure: bool
    scheme: str | None = None
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    certificate_path: str | None = None
    private_key_path: str | None = None
    proxy_url: str | None = None


def _require_file(kubeconfig: str) -> None:
    """Before the client library's own (misleading) message about a missing file."""
    first = kubeconfig.split(os.pathsep)[0]
    if not os.path.isfile(first):
        raise CredentialsError(f"the kubeconfig {first} does not exist (or is not a file)")


#: A segment made of these needs no quoting (every Kubernetes name and namespace is).
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


def _path(*segments: str) -> str:
    return "/" + "/".join(s if _PLAIN_SEGMENT.fullmatch(s) else quote(s, safe="") for s in segments)


def resource_of(path: str) -> str:
    """``deployments``, ``backgroundworkers/status``... of an API path (for the metrics)."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    return "/".join([rest[0], *rest[2:3]]) if rest else "discovery"


def _deployment_path(deployment: Mapping[str, Any]) -> str:
    metadata = deployment["metadata"]
    return _path(
        "apis", "apps", "v1", "namespaces", metadata["namespace"], "deployments", metadata["name"]
    )


def _budget_path(namespace: str, name: str) -> str:
    return _path("apis", "policy", "v1", "namespaces", namespace, "poddisruptionbudgets", name)


#: The environment variables aiohttp's ``trust_env`` reads besides ``~/.netrc``.
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy", "netrc")


def _skip_netrc_lookups(api_client: Any, env: Mapping[str, str]) -> None:
    """Stop the client's session from looking for ``~/.netrc`` on every request.

    kubernetes_asyncio opens its aiohttp session with ``trust_env=True``, which, for every
    request without aiohttp's own ``auth`` (all of them: the token is a header), reads the
    netrc file in a thread of the default executor: a thread hop per API call. Without any
    proxy or netrc setting in the environment, ``trust_env`` has nothing else to give, so it
    is turned off; with one, it stays as the client made it.
    """
    if any(name.lower() in _PROXY_VARIABLES for name in env):
        return
    session = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
    if session is not None and hasattr(session, "_trust_env"):
        session._trust_env = False


def worker_path(namespace: str | None, name: str | None = None) -> str:
    parts = ["apis", GROUP, VERSION]
    if namespace is not None:
        parts += ["namespaces", namespace]
    parts.append(PLURAL)
    if name is not None:
        parts.append(name)
    return _path(*parts)


class KubeApi:
    """Asynchronous Kubernetes calls (one ``ApiClient``, shared by every reconcile)."""

    def __init__(
        self,
        api_client: Any,
        *,
        retry: RetryPolicy | None = None,
        metrics: OperatorMetrics | None = None,
        watch_client: Any = None,
    ) -> None:
        self._client = api_client
        self._watch_client = watch_client if watch_client is not None else api_client
        self.retry = retry or RetryPolicy()
        self._metrics = metrics

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        retry: RetryPolicy | None = None,
        metrics: OperatorMetrics | None = None,
    ) -> KubeApi:
        """Credentials from ``kubeconfig``, ``$KUBECONFIG``, in-cluster, or ``~/.kube/config``."""
        configuration = k8s_client.Configuration()
        path = kubeconfig or os.environ.get("KUBECONFIG")
        if path:
            _require_file(path)
        try:
            if not path and os.environ.get("KUBERNETES_SERVICE_HOST"):
                k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            else:
                await k8s_config.load_kube_config(
                    config_file=path, client_configuration=configuration, persist_config=False
                )
        except (k8s_config.ConfigException, OSError, ValueError) as exc:
            where = path or "in-cluster credentials or ~/.kube/config"
            raise CredentialsError(f"cannot use the kubeconfig {where}: {exc}") from None
        # Each client sizes its pool when it is made: the watches' one keeps the default.
        watch_client = k8s_client.ApiClient(configuration=configuration)
        configuration.connection_pool_maxsize = MAX_CONNECTIONS
        api_client = k8s_client.ApiClient(configuration=configuration)
        for client in (api_client, watch_client):
            _skip_netrc_lookups(client, os.environ)
        return cls(api_client, retry=retry, metrics=metrics, watch_client=watch_client)

    async def credentials(self) -> Credentials:
        """The server and credentials of this client (a refreshed token, if it expires)."""
        config = self._client.configuration
        header = config.get_api_key_with_prefix("BearerToken")
        if inspect.isawaitable(header):
            header = await header
        scheme, _, token = str(header or "").rpartition(" ")
        return Credentials(
            server=str(config.host),
            ca_path=config.ssl_ca_cert or None,
            insecure=not config.verify_ssl,
            scheme=scheme or None,
            token=token or None,
            username=config.username or None,
            password=config.password or None,
            certificate_path=config.cert_file or None,
            private_key_path=config.key_file or None,
            proxy_url=config.proxy or None,
        )

    async def close(self) -> None:
        await self._client.close()
        if self._watch_client is not self._client:
            await self._watch_client.close()

    async def __aenter__(self) -> KubeApi:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ the one request

    async def _once(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = _JSON,
        accept: str = _JSON,
    ) -> Any:
        self._count(method, path)
        try:
            async with asyncio.timeout(self.retry.request_timeout_seconds):
                return await self._client.call_api(
                    path,
                    method,
                    query_params=list(query),
                    header_params={"Content-Type": content_type, "Accept": accept},
                    body=body,
                    response_types_map={200: "object", 201: "object", 202: "object"},
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                )
        except (ApiException, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise classify(exc) from exc

    def _count(self, method: str, path: str) -> None:
        if self._metrics is not None:
            self._metrics.api_requests.labels(method=method, resource=resource_of(path)).inc()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = _JSON,
        accept: str = _JSON,
    ) -> Any:
        """One API call, retried while it fails transiently; returns the decoded JSON."""
        return await self.retrying(
            lambda: self._once(
                method, path, query=query, body=body, content_type=content_type, accept=accept
            ),
            what=f"{method} {path}",
        )

    async def retrying(self, call: Callable[[], Awaitable[T]], *, what: str) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except ApiError as exc:
                if not exc.transient:
                    raise
                attempt += 1
                if attempt >= self.retry.attempts:
                    raise TransientApiError(exc.status, exc.message) from exc
                delay = self.retry.delay(attempt - 1, hint_seconds=exc.retry_after_seconds)
                log.info("%s failed (%s); retry %d in %.2fs", what, exc, attempt, delay)
                await asyncio.sleep(delay)

    # ------------------------------------------------------------------ BackgroundWorkers

    async def get_worker(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self.request("GET", worker_path(namespace, name))
        except NotFound:
            return None
        return result

    async def list_workers(self, namespace: str | None) -> list[dict[str, Any]]:
        """Every BackgroundWorker in ``namespace`` (``None``: all namespaces), page by page."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = [("limit", "500")] + ([("continue", token)] if token else [])
            page = await self.request("GET", worker_path(namespace), query=query)
            items.extend(page.get("items") or ())
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    async def patch_worker_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "PATCH",
            worker_path(namespace, name) + "/status",
            body={"status": dict(status)},
            content_type=_MERGE,
        )
        return result

    async def worker_kind_is_served(self) -> bool:
        """Whether the API server serves ``tickwork.dev/v1alpha1`` backgroundworkers."""
        try:
            resources = await self.request("GET", _path("apis", GROUP, VERSION))
        except NotFound:
            return False
        return any(r.get("name") == PLURAL for r in resources.get("resources") or ())

    # ------------------------------------------------------------------ Deployments & pods

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self.request(
                "GET", _path("apis", "apps", "v1", "namespaces", namespace, "deployments", name)
            )
        except NotFound:
            return None
        return result

    async def apply_deployment(self, deployment: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply with the operator's field manager; forced (drift wins back)."""
        result: dict[str, Any] = await self.request(
            "PATCH",
            _deployment_path(deployment),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=dict(deployment),
            content_type=_APPLY,
        )
        return result

    async def apply_disruption_budget(self, budget: Mapping[str, Any]) -> None:
        """Server-side apply of a worker's PodDisruptionBudget (forced, like the Deployment)."""
        await self.request(
            "PATCH",
            _budget_path(budget["metadata"]["namespace"], budget["metadata"]["name"]),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=dict(budget),
            content_type=_APPLY,
        )

    async def replace_deployment_spec(
        self, deployment: Mapping[str, Any], spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Replace the whole ``spec`` of ``deployment`` if it is still at its resourceVersion.

        A JSON patch (``test`` of ``metadata.resourceVersion``, then ``replace`` of ``spec``):
        fields other managers added go, and a concurrent change makes it fail (422) rather
        than be overwritten unseen.
        """
        operations = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": deployment["metadata"]["resourceVersion"],
            },
            {"op": "replace", "path": "/spec", "value": dict(spec)},
        ]
        result: dict[str, Any] = await self._once(
            "PATCH",
            _deployment_path(deployment),
            query=[("fieldManager", f"{FIELD_MANAGER}-repair")],
            body=operations,
            content_type=_JSON_PATCH,
        )
        return result

    async def watch_deployment(
        self, namespace: str, name: str, *, resource_version: str, timeout_seconds: int = 300
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``(type, object)`` of the changes of one Deployment after ``resource_version``.

        Ends when the server closes the watch (``timeout_seconds``); raises ``ApiError`` (410
        when ``resource_version`` is too old to watch from).
        """
        query = [
            ("watch", "true"),
            ("fieldSelector", f"metadata.name={name}"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        path = _path("apis", "apps", "v1", "namespaces", namespace, "deployments")
        self._count("WATCH", path)
        try:
            response = await self._watch_client.call_api(
                path,
                "GET",
                query_params=query,
                header_params={"Accept": _JSON},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout_seconds + 30,
            )
        except (ApiException, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise classify(exc) from exc
        try:
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise ApiError(int(obj.get("code") or 0), str(obj.get("message") or obj))
                yield str(event.get("type")), obj
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise classify(exc) from exc
        finally:
            response.release()

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        result = await self.request(
            "GET",
            _path("api", "v1", "namespaces", namespace, "pods"),
            query=[("labelSelector", selector)],
        )
        return list(result.get("items") or ())

    async def secret_exists(self, namespace: str, name: str) -> bool:
        """Metadata only (``PartialObjectMetadata``): the Secret's data never reaches us."""
        try:
            await self.request(
                "GET",
                _path("api", "v1", "namespaces", namespace, "secrets", name),
                accept=_METADATA_ONLY,
            )
        except NotFound:
            return False
        return True

    async def create_event(self, event: Mapping[str, Any]) -> None:
        namespace = event["metadata"]["namespace"]
        await self.request(
            "POST", _path("api", "v1", "namespaces", namespace, "events"), body=dict(event)
        )

    # ------------------------------------------------------------------ Leases

    def _lease_path(self, namespace: str, name: str | None = None) -> str:
        parts = ["apis", "coordination.k8s.io", "v1", "namespaces", namespace, "leases"]
        return _path(*parts, *([name] if name else []))

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._once("GET", self._lease_path(namespace, name))
        except NotFound:
            return None
        return result

    async def create_lease(self, lease: Mapping[str, Any]) -> dict[str, Any]:
        """Fails with a 409 ``ApiError`` when someone else created it first (no retry)."""
        namespace = lease["metadata"]["namespace"]
        result: dict[str, Any] = await self._once(
            "POST", self._lease_path(namespace), body=dict(lease)
        )
        return result

    async def replace_lease(self, lease: Mapping[str, Any]) -> dict[str, Any]:
        """Optimistic: fails with a 409 ``ApiError`` if the resourceVersion is not current."""
        metadata = lease["metadata"]
        result: dict[str, Any] = await self._once(
            "PUT", self._lease_path(metadata["namespace"], metadata["name"]), body=dict(lease)
        )
        return result
