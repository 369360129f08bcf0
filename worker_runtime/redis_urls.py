"""Redis URLs: checked before anything connects, and shown only with their secrets redacted.

Pure: no I/O. ``check_redis_url`` accepts what redis-py would connect with *and* what
tickwork means to allow, so a mistake is one line at start instead of a retry loop later:

* ``redis://[user[:password]@]host[:port][/db]``, ``rediss://…`` (TLS) and
  ``unix:///path/to/socket``; ASCII only, no spaces or control characters (percent-encode).
* Redis Sentinel: ``redis+sentinel://[user[:password]@]host[:port][,host[:port]…]/SERVICE[/db]``
  (``rediss+sentinel://`` for TLS to the sentinels and the primary). The hosts are the
  sentinels (port 26379 unless given), ``SERVICE`` the name they monitor the primary by; the
  user info is the primary's, ``sentinel_username``/``sentinel_password`` the sentinels'.
* Redis Cluster: ``redis+cluster://[user[:password]@]host[:port][,host[:port]…]``
  (``rediss+cluster://`` for TLS): any reachable nodes (port 6379 unless given); the client
  learns the rest. Only database 0 exists in a cluster.
* ``db`` (in the path or ``?db=``) is a number from 0 to ``MAX_DB_INDEX``.
* Query options: ``db``, ``username``, ``password``, for the TLS schemes the TLS options
  in ``TLS_OPTIONS``, for Sentinel ``SENTINEL_OPTIONS``. The connection settings tickwork
  sizes to the lease (timeouts, retries, pool size, keepalive, protocol, client name) are
  refused in the URL; anything else is refused as unknown.

``parse_redis_url`` turns a checked URL into a ``RedisTarget`` (what to connect to and how);
``worker_runtime.connecting`` builds the client from it.

``redact_url`` hides the user info and the value of every query option whose name looks
secret (``password``, ``ssl_password``, anything with pass/secret/token/auth/cred/key), and
drops a fragment. It never raises, whatever the string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote, urlsplit

__all__ = [
    "MAX_DB_INDEX",
    "NETWORK_URL_PREFIXES",
    "SCHEMES",
    "SECRET_OPTION_PATTERN",
    "SENTINEL_OPTIONS",
    "TLS_OPTIONS",
    "URL_PREFIXES",
    "Deployment",
    "RedisTarget",
    "carries_password",
    "check_redis_url",
    "parse_redis_url",
    "redact_url",
    "url_secrets",
]


class Deployment(StrEnum):
    """What a Redis URL points at."""

    SINGLE = "single"  # one server (redis://, rediss://, unix://)
    SENTINEL = "sentinel"  # a primary found through Redis Sentinel
    CLUSTER = "cluster"  # a Redis Cluster


#: Redis has 16 databases unless configured otherwise (and Redis Cluster only database 0).
MAX_DB_INDEX = 15
#: Every scheme tickwork accepts, by deployment; the ``rediss`` ones use TLS.
SCHEMES: dict[str, Deployment] = {
    "redis": Deployment.SINGLE,
    "rediss": Deployment.SINGLE,
    "unix": Deployment.SINGLE,
    "redis+sentinel": Deployment.SENTINEL,
    "rediss+sentinel": Deployment.SENTINEL,
    "redis+cluster": Deployment.CLUSTER,
    "rediss+cluster": Deployment.CLUSTER,
}
#: What a Redis URL starts with.
URL_PREFIXES = tuple(f"{scheme}://" for scheme in SCHEMES)
#: What a URL in a ``BackgroundWorker`` may start with (a pod reaches Redis over the network,
#: not a unix socket): the operator's CRD rule and spec check.
NETWORK_URL_PREFIXES = tuple(prefix for prefix in URL_PREFIXES if prefix != "unix://")
_TLS_SCHEMES = ("rediss", "rediss+sentinel", "rediss+cluster")
#: The port of a host given without one: a sentinel's, or a Redis server's.
DEFAULT_PORTS = {Deployment.SENTINEL: 26379, Deployment.CLUSTER: 6379, Deployment.SINGLE: 6379}
#: Options for the sentinels themselves (the user info is the primary's).
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
#: TLS options redis-py reads from a ``rediss://`` URL that tickwork lets through.
TLS_OPTIONS = (
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_check_hostname",
    "ssl_ciphers",
)
_BASE_OPTIONS = ("db", "username", "password")
# redis-py would take these from the URL over tickwork's own settings.
_TICKWORK_OPTIONS = (
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "socket_read_size",
    "retry_on_timeout",
    "retry_on_error",
    "max_connections",
    "health_check_interval",
    "timeout",
    "protocol",
    "client_name",
    "legacy_responses",
)
#: A query option whose name matches this (case-insensitive) holds a secret.
SECRET_OPTION_PATTERN = r"pass|secret|token|auth|cred|key"
_SECRET = re.compile(SECRET_OPTION_PATTERN, re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]+")
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]/@]+)(?::([0-9]*))?")
_SERVICE = re.compile(r"[A-Za-z0-9._-]+")
_BOOLEANS = ("true", "false", "yes", "no", "1", "0")
_CERT_REQS = ("none", "optional", "required")
REDACTED = "***"


def _is_secret(name: str) -> bool:
    return bool(_SECRET.search(unquote(name)))


def redact_url(url: str) -> str:
    """``url`` without its user info, secret query values or fragment: safe for logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        # Every part of the user info is hidden; only its shape stays (``:***@`` is a
        # password without a user name).
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        hidden = (REDACTED if user else "") + (f":{REDACTED}" if colon else "")
        netloc = f"{hidden or REDACTED}@{host}"
    query = "&".join(
        f"{piece.partition('=')[0]}={REDACTED}" if _is_secret(piece.partition("=")[0]) else piece
        for piece in parts.query.split("&")
    )
    text = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query:
        text += f"?{query}"
    if parts.fragment:
        text += f"#{REDACTED}"
    return text


def carries_password(url: str) -> bool:
    """True when ``url`` holds a password: in its user info or in a secret query option."""
    try:
        if urlsplit(url).password is not None:
            return True
    except ValueError:
        return False
    return any(name != "user info" for name in url_secrets(url))


def url_secrets(url: str) -> list[str]:
    """Which secret parts ``url`` carries: ``user info`` and/or secret query option names."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = ["user info"] if "@" in parts.netloc else []
    for piece in parts.query.split("&"):
        name = piece.partition("=")[0]
        if name and _is_secret(name):
            found.append(unquote(name))
    return found


def _check_db(value: str, *, where: str, what: str, safe: str) -> None:
    if not _DIGITS.fullmatch(value) or int(value) > MAX_DB_INDEX:
        raise ValueError(
            f"{what} {safe!r}: the database {where} {value!r} must be a number from 0 to "
            f"{MAX_DB_INDEX}"
        )


def _check_option(name: str, value: str, *, scheme: str, what: str, safe: str, shown: str) -> None:
    if name in _TICKWORK_OPTIONS:
        raise ValueError(
            f"{what} {safe!r}: option {name!r} is set by tickwork from the lease timing; "
            "remove it from the URL"
        )
    deployment = SCHEMES[scheme]
    allowed = (
        _BASE_OPTIONS
        + (TLS_OPTIONS if scheme in _TLS_SCHEMES else ())
        + (SENTINEL_OPTIONS if deployment is Deployment.SENTINEL else ())
    )
    if name not in allowed:
        extra = "" if scheme in _TLS_SCHEMES else f" (TLS options need {_tls_scheme(scheme)}://)"
        raise ValueError(
            f"{what} {safe!r}: unknown option {name!r}; expected one of {', '.join(allowed)}{extra}"
        )
    if value == "":
        raise ValueError(f"{what} {safe!r}: option {name!r} has no value")
    if name == "db":
        _check_db(value, where="option", what=what, safe=safe)
        if deployment is Deployment.CLUSTER and int(value) != 0:
            raise ValueError(f"{what} {safe!r}: Redis Cluster has only database 0, not {value}")
    elif name == "ssl_check_hostname" and value.lower() not in _BOOLEANS:
        raise ValueError(f"{what} {safe!r}: option {name}={shown!r} is not true or false")
    elif name == "ssl_cert_reqs" and value.lower() not in _CERT_REQS:
        raise ValueError(
            f"{what} {safe!r}: option {name}={shown!r} is not one of: {', '.join(_CERT_REQS)}"
        )


def _tls_scheme(scheme: str) -> str:
    return "rediss" + scheme.removeprefix("rediss").removeprefix("redis")


def _hosts(
    netloc: str, deployment: Deployment, *, what: str, safe: str
) -> tuple[tuple[str, int], ...]:
    """``host[:port],…`` (after the user info) as ``(host, port)`` pairs."""
    hosts = []
    for piece in netloc.rpartition("@")[2].split(","):
        match = _HOST.fullmatch(piece)
        if not piece or match is None:
            raise ValueError(
                f"{what} {safe!r}: {piece!r} is not host[:port] (hosts are separated by commas)"
            )
        host, port = match.group(1), match.group(2)
        if port is not None and (not port or not 1 <= int(port) <= 65535):
            raise ValueError(f"{what} {safe!r}: the port of {piece!r} is not from 1 to 65535")
        hosts.append((host.strip("[]"), int(port) if port else DEFAULT_PORTS[deployment]))
    return tuple(hosts)


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisTarget:
    """What a checked URL points at. ``url`` is the single server's URL as redis-py reads it
    (for Sentinel and Cluster ``hosts`` say where to start). Secrets are never in ``repr``."""

    deployment: Deployment
    url: str = field(repr=False)
    tls: bool
    hosts: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict[str, str] = field(default_factory=dict, repr=False)


def check_redis_url(url: str, *, what: str = "redis URL") -> str:
    """``url`` when it is usable; otherwise ``ValueError`` naming ``what``, secrets redacted."""
    parse_redis_url(url, what=what)
    return url


def parse_redis_url(url: str, *, what: str = "redis URL") -> RedisTarget:
    """The ``RedisTarget`` of a usable ``url``; ``ValueError`` naming ``what`` otherwise."""
    safe = redact_url(url)
    if not url.isascii() or not url.isprintable() or any(ch.isspace() for ch in url):
        raise ValueError(
            f"{what} {safe!r} must be ASCII without spaces or control characters "
            "(percent-encode them)"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError(f"{what} {safe!r} is not a valid URL") from None
    scheme = parts.scheme
    if scheme not in SCHEMES:
        raise ValueError(f"{what} {safe!r} must start with {', '.join(URL_PREFIXES)}")
    deployment = SCHEMES[scheme]
    if parts.fragment:
        raise ValueError(f"{what} {safe!r} must not have a #fragment")
    db_path = ""
    service = None
    hosts: tuple[tuple[str, int], ...] = ()
    if scheme == "unix":
        if not parts.path.startswith("/"):
            raise ValueError(f"{what} {safe!r} needs the socket's absolute path: unix:///path")
    elif deployment is Deployment.SINGLE:
        try:
            port = parts.port
        except ValueError:
            raise ValueError(
                f"{what} {safe!r} is not a valid URL (is the port a number from 1 to 65535?)"
            ) from None
        if not parts.hostname:
            raise ValueError(f"{what} {safe!r} has no host")
        if port == 0:
            raise ValueError(f"{what} {safe!r}: port 0 is not a port")
        db_path = unquote(parts.path).removeprefix("/")
    else:
        hosts = _hosts(parts.netloc, deployment, what=what, safe=safe)
        path = unquote(parts.path).removeprefix("/")
        if deployment is Deployment.SENTINEL:
            service, _, db_path = path.partition("/")
            if not _SERVICE.fullmatch(service):
                raise ValueError(
                    f"{what} {safe!r} needs the name the sentinels know the primary by: "
                    f"{scheme}://host:port[,host:port…]/SERVICE[/db] (letters, digits, . _ -)"
                )
        else:
            db_path = path
    if db_path:
        _check_db(db_path, where="in the path", what=what, safe=safe)
        if deployment is Deployment.CLUSTER and int(db_path) != 0:
            raise ValueError(f"{what} {safe!r}: Redis Cluster has only database 0, not {db_path}")
    seen: dict[str, str] = {}
    for piece in parts.query.split("&") if parts.query else ():
        raw_name, _, raw_value = piece.partition("=")
        name, value = unquote(raw_name), unquote(raw_value)
        if name in seen:
            raise ValueError(f"{what} {safe!r}: option {name!r} is given twice")
        seen[name] = value
        shown = REDACTED if _is_secret(name) else value
        _check_option(name, value, scheme=scheme, what=what, safe=safe, shown=shown)
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    user, colon, secret = userinfo.partition(":")
    return RedisTarget(
        deployment=deployment,
        url=url,
        tls=scheme in _TLS_SCHEMES,
        hosts=hosts,
        service=service,
        db=int(seen.get("db") or db_path or 0),
        username=seen.get("username") or unquote(user) or None,
        password=seen.get("password") or (unquote(secret) if colon else None),
        options=seen,
    )
