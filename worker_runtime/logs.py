"""The one place that chooses the log format (text or JSON)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

__all__ = ["JSON_KEYS", "LOG_FORMATS", "JsonFormatter", "configure_logging"]

LOG_FORMATS = ("text", "json")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        worker = getattr(record, "worker", None)
        if worker is not None:
            tick = getattr(record, "tick", None)
            replica = getattr(record, "replica", None)
            suffix = f" [worker={worker}"
            suffix += f" tick={tick}" if tick is not None else ""
            suffix += f" replica={replica}]" if replica is not None else "]"
            first, sep, rest = text.partition("\n")
            text = first + suffix + sep + rest
        return text


# The attributes every LogRecord has (whatever the Python version): anything else on a
# record came from ``extra=`` (or a LoggerAdapter) and is kept in the JSON line.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime"}
# The shape's own keys, in this order; an ``extra=`` field of the same name does not replace them.
JSON_KEYS = ("timestamp", "level", "logger", "message")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, the same shape for the runtime and the operator::

        {"timestamp": "2026-05-04T10:11:12.345Z", "level": "info",
         "logger": "worker_runtime.manager", "message": "...",
         <every extra= field>, "exception": "Traceback ..."}

    ``timestamp`` is RFC 3339 in UTC with milliseconds; ``level`` is the level name in lower
    case (debug, info, warning, error, critical). ``rename`` maps a record attribute to the key
    it is written under, ``hide`` drops attributes (the operator: kopf's internals).
    """

    def __init__(
        self, *, rename: Mapping[str, str] | None = None, hide: Iterable[str] = ()
    ) -> None:
        super().__init__()
        self._rename = dict(rename or {})
        self._hide = frozenset(hide)

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, object] = {
            "timestamp": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRIBUTES or key in self._hide or key.startswith("_"):
                continue
            entry.setdefault(self._rename.get(key, key), value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def check_level(level: str) -> str:
    upper = level.upper()
    if upper not in _LEVELS:
        raise ValueError(f"log level {level!r} is not one of: {', '.join(_LEVELS).lower()}")
    return upper


def configure_logging(*, log_format: str, level: str) -> None:
    """Send every log record to stderr in ``log_format``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of: text, json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(check_level(level))
