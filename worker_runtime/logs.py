"""The one place that chooses the log format (text or JSON)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

__all__ = ["LOG_FORMATS", "configure_logging"]

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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("worker", "tick", "replica"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
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
