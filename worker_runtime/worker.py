"""``PeriodicWorker``: the class a worker author subclasses (ABP's
``AsyncPeriodicBackgroundWorkerBase``)."""

from __future__ import annotations

import inspect
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from worker_runtime.scheduling import SCHEDULE_OPTIONS, Schedule

if TYPE_CHECKING:
    import svcs

    from worker_runtime.context import TickContext

__all__ = ["PeriodicWorker", "validate_worker_name"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}")

Duration: TypeAlias = timedelta | float | int | str


def validate_worker_name(name: str) -> str:
    """Worker names become Redis hash tags and metric labels: keep them plain."""
    # fullmatch: ``$`` in ``match`` would let a trailing newline through into every log line.
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"worker name {name!r} must be 1-200 characters of ASCII letters, digits and "
            "_ . : / -, starting with a letter or digit"
        )
    return name


class PeriodicWorker:
    """Subclass, set a schedule, and implement ``async def do_work(self, ctx)``.

    Schedule attributes (class level)::

        period = timedelta(minutes=10)   # or seconds, or "10m"; at least 100 ms
        mode = "delay"                   # "delay" (ABP) or "rate" (drift-free grid)
        cron = "*/10 * * * *"            # instead of period
        timezone = "Europe/Berlin"       # with cron
        run_on_start = False             # the first slot is at once instead of one period in
        timeout = None                   # cancel a run after this long (outcome "timeout")
        jitter = None                    # random delay added to each start, up to this long
        misfire = "skip"                 # or "catch_up" (run the latest missed slot once)
        misfire_grace = None             # catch-up window; default one period

    A class without ``period`` or ``cron`` is an abstract base; the schedule of a concrete
    class is validated when the class is defined.
    """

    period: ClassVar[Duration | None] = None
    mode: ClassVar[str] = "delay"
    cron: ClassVar[str | None] = None
    timezone: ClassVar[str | None] = None
    run_on_start: ClassVar[bool] = False
    timeout: ClassVar[Duration | None] = None
    jitter: ClassVar[Duration | None] = None
    misfire: ClassVar[str] = "skip"
    misfire_grace: ClassVar[Duration | None] = None
    #: The worker's name in logs, metrics and Redis keys; defaults to the class name.
    worker_name: ClassVar[str | None] = None

    class_schedule: ClassVar[Schedule | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not inspect.iscoroutinefunction(cls.do_work):
            raise TypeError(f"{cls.__qualname__}.do_work must be declared with 'async def'")
        if cls.worker_name is not None:
            try:
                validate_worker_name(cls.worker_name)
            except ValueError as exc:
                raise TypeError(f"{cls.__qualname__}: {exc}") from None
        if cls.period is None and cls.cron is None:
            cls.class_schedule = None
            return
        try:
            cls.class_schedule = cls.schedule_from(
                {attr: getattr(cls, attr) for attr in SCHEDULE_OPTIONS}
            )
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{cls.__qualname__}: {exc}") from None

    @staticmethod
    def schedule_from(options: dict[str, Any]) -> Schedule:
        return Schedule.build(
            period=options.get("period"),
            mode=options.get("mode") or "delay",
            cron=options.get("cron"),
            timezone=options.get("timezone"),
            run_on_start=bool(options.get("run_on_start")),
            timeout=options.get("timeout"),
            jitter=options.get("jitter"),
            misfire=options.get("misfire") or "skip",
            misfire_grace=options.get("misfire_grace"),
        )

    def __init__(self, *, name: str | None = None, schedule: Schedule | None = None) -> None:
        self.name = validate_worker_name(name or self.worker_name or type(self).__name__)
        self._schedule = schedule or self.class_schedule

    @property
    def schedule(self) -> Schedule:
        if self._schedule is None:
            raise ValueError(
                f"worker {self.name!r} has no schedule: set period or cron on the class, "
                "or pass --period/--cron"
            )
        return self._schedule

    def register_services(self, registry: svcs.Registry) -> None:
        """Register the service factories this worker's ticks use (ABP: ConfigureServices).

        Called once when the worker is added to a manager; the default registers nothing.
        """

    async def do_work(self, ctx: TickContext) -> None:
        """One run. Exceptions are logged and counted; the schedule goes on."""
        raise NotImplementedError

    def __repr__(self) -> str:
        detail = self._schedule.describe() if self._schedule else "no schedule"
        return f"<{type(self).__name__} {self.name!r} {detail}>"
