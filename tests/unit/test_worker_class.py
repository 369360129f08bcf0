"""Defining workers: schedules are validated when the class is defined."""

from __future__ import annotations

import importlib.util
import json
import logging
from datetime import timedelta

import pytest

from worker_runtime import PeriodicWorker, TickContext
from worker_runtime.logs import JsonFormatter, TextFormatter


def test_a_worker_with_an_invalid_period_fails_at_class_definition_naming_the_class() -> None:
    with pytest.raises(TypeError, match=r"TooFast: period .* is shorter than the minimum 100ms"):

        class TooFast(PeriodicWorker):
            period = 0.01

            async def do_work(self, ctx: TickContext) -> None: ...


def test_a_worker_with_a_bad_cron_fails_at_class_definition() -> None:
    with pytest.raises(TypeError, match="cron '61 \\* \\* \\* \\*': minute '61' is outside 0-59"):

        class BadCron(PeriodicWorker):
            cron = "61 * * * *"

            async def do_work(self, ctx: TickContext) -> None: ...


def test_do_work_must_be_async() -> None:
    with pytest.raises(TypeError, match=r"Sync\.do_work must be declared with 'async def'"):

        class Sync(PeriodicWorker):
            period = 1

            def do_work(self, ctx: TickContext) -> None:  # type: ignore[override]
                pass


def test_a_class_without_a_schedule_is_an_abstract_base_for_others() -> None:
    class Base(PeriodicWorker):
        async def do_work(self, ctx: TickContext) -> None: ...

    class Concrete(Base):
        period = timedelta(seconds=30)
        mode = "rate"

    assert Base.class_schedule is None
    with pytest.raises(ValueError, match="worker 'Base' has no schedule"):
        _ = Base().schedule
    assert Concrete().schedule.period_seconds == 30
    assert Concrete().name == "Concrete"
    assert Concrete(name="billing.sync").name == "billing.sync"


def test_a_worker_name_that_would_break_redis_hash_tags_is_refused() -> None:
    class Fine(PeriodicWorker):
        period = 1

        async def do_work(self, ctx: TickContext) -> None: ...

    with pytest.raises(ValueError, match=r"worker name 'a\{b\}'"):
        Fine(name="a{b}")


def test_the_standard_library_operator_module_is_not_shadowed() -> None:
    import operator

    spec = importlib.util.find_spec("operator")
    assert spec is not None and spec.origin is not None
    assert "/operator/" not in spec.origin and hasattr(operator, "itemgetter")
    assert importlib.util.find_spec("worker_operator") is not None


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "tickwork.worker", logging.INFO, __file__, 1, "hello %s", ("there",), None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_logs_carry_worker_tick_and_replica() -> None:
    entry = json.loads(JsonFormatter().format(_record(worker="w", tick=3, replica="pod-1")))
    assert entry["message"] == "hello there"
    assert (entry["worker"], entry["tick"], entry["replica"], entry["level"]) == (
        "w",
        3,
        "pod-1",
        "info",
    )


def test_text_logs_append_the_tick_context() -> None:
    line = TextFormatter().format(_record(worker="w", tick=3, replica="pod-1"))
    assert line.endswith("hello there [worker=w tick=3 replica=pod-1]")
    assert "[" not in TextFormatter().format(_record())


def test_json_logs_keep_every_extra_field_and_never_let_one_replace_the_shape() -> None:
    record = _record(worker="w", user_id=7, level="shadowed", payload={"k": [1, 2]})
    entry = json.loads(JsonFormatter().format(record))

    assert (entry["user_id"], entry["payload"]) == (7, {"k": [1, 2]})
    assert entry["level"] == "info"
    assert list(entry)[:4] == ["timestamp", "level", "logger", "message"]
    assert entry["timestamp"].endswith("Z")
