"""Redis URLs: checked before anything connects, and shown only with their secrets redacted.

Pure: no I/O. ``check_redis_url`` accepts what redis-py would connect with *and* what
tickwork means to allow, so a mistake is one line at start instead of a retry loop later:

* ``redis://[user[:password]@]host[:port][/db]``, ``rediss://…`` (TLS) and
  ``unix:///path/to/socket``; ASCII only, no spaces or control characters (percent-encode).
* ``db`` (in the path or ``?db=``) is a number from 0 to ``MAX_DB_INDEX``.
* Query options: ``db``, ``username``, ``password``, and for ``rediss://`` the TLS options
  in ``TLS_OPTIONS``. The connection settings tickwork sizes to the lease (timeouts, retries,
  pool size, keepalive, protocol, client name) are refused in the URL; anything else is
  refused as unknown.

``redact_url`` hides the user info and the value of every query option whose name looks
secret (``password``, ``ssl_password``, anything with pass/secret/token/auth/cred/key), and
drops a fragment. It never raises, whatever the string.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

__all__ = [
    "MAX_DB_INDEX",
    "SECRET_OPTION_PATTERN",
    "TLS_OPTIONS",
    "carries_password",
    "check_redis_url",
    "redact_url",
    "url_secrets",
]

#: Redis has 16 databases unless configured otherwise (and Redis Cluster only database 0).
MAX_DB_INDEX = 15
SCHEMES = ("redis", "rediss", "unix")
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
    allowed = _BASE_OPTIONS + (TLS_OPTIONS if scheme == "rediss" else ())
    if name not in allowed:
        extra = "" if scheme == "rediss" else " (TLS options need rediss://)"
        raise ValueError(
            f"{what} {safe!r}: unknown option {name!r}; expected one of {', '.join(allowed)}{extra}"
        )
    if value == "":
        raise ValueError(f"{what} {safe!r}: option {name!r} has no value")
    if name == "db":
        _check_db(value, where="option", what=what, safe=safe)
    elif name == "ssl_check_hostname" and value.lower() not in _BOOLEANS:
        raise ValueError(f"{what} {safe!r}: option {name}={shown!r} is not true or false")
    elif name == "ssl_cert_reqs" and value.lower() not in _CERT_REQS:
        raise ValueError(
            f"{what} {safe!r}: option {name}={shown!r} is not one of: {', '.join(_CERT_REQS)}"
        )


def check_redis_url(url: str, *, what: str = "redis URL") -> str:
    """``url`` when it is usable; otherwise ``ValueError`` naming ``what``, secrets redacted."""
    safe = redact_url(url)
    if not url.isascii() or not url.isprintable() or any(ch.isspace() for ch in url):
        raise ValueError(
            f"{what} {safe!r} must be ASCII without spaces or control characters "
            "(percent-encode them)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(
            f"{what} {safe!r} is not a valid URL (is the port a number from 1 to 65535?)"
        ) from None
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{what} {safe!r} must start with redis://, rediss:// or unix://")
    if parts.fragment:
        raise ValueError(f"{what} {safe!r} must not have a #fragment")
    if parts.scheme == "unix":
        if not parts.path.startswith("/"):
            raise ValueError(f"{what} {safe!r} needs the socket's absolute path: unix:///path")
    else:
        if not parts.hostname:
            raise ValueError(f"{what} {safe!r} has no host")
        if port == 0:
            raise ValueError(f"{what} {safe!r}: port 0 is not a port")
        db_path = unquote(parts.path).removeprefix("/")
        if db_path:
            _check_db(db_path, where="in the path", what=what, safe=safe)
    seen: set[str] = set()
    for piece in parts.query.split("&") if parts.query else ():
        raw_name, _, raw_value = piece.partition("=")
        name, value = unquote(raw_name), unquote(raw_value)
        if name in seen:
            raise ValueError(f"{what} {safe!r}: option {name!r} is given twice")
        seen.add(name)
        shown = REDACTED if _is_secret(name) else value
        _check_option(name, value, scheme=parts.scheme, what=what, safe=safe, shown=shown)
    return url
