"""The job handler API and the built-in `produce` handler.

A handler is an async generator that yields `bytes` chunks. It is registered by name::

    from streamer_producer.handlers import JobContext, handler

    @handler("report")
    async def report(ctx: JobContext):
        for index in range(ctx.start, 10):
            yield f"row {index}".encode()

`ctx.start` is the index of the first chunk to yield: chunks before it were already
published by an earlier attempt, so a deterministic handler resumes exactly there.
Raise `PermanentError` for failures that retrying cannot fix (bad parameters).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.metadata
from collections.abc import AsyncIterator, Callable, Mapping

from streamer_common.settings import SettingsError

ENTRY_POINT_GROUP = "streamer.handlers"


@dataclasses.dataclass(frozen=True)
class JobContext:
    """What a handler is told about the job it runs."""

    stream_id: str
    params: Mapping[str, str]
    start: int
    attempt: int


Handler = Callable[[JobContext], AsyncIterator[bytes]]


class PermanentError(Exception):
    """A failure that retrying cannot fix: the stream ends at once with this message."""


class Registry:
    """Handlers by name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, function: Handler) -> None:
        """Add `function` under `name`; a name can be registered only once."""
        if name in self._handlers and self._handlers[name] is not function:
            raise ValueError(f"a job handler named {name!r} is already registered")
        self._handlers[name] = function

    def get(self, name: str) -> Handler | None:
        """The handler registered under `name`, if any."""
        return self._handlers.get(name)

    @property
    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._handlers)


registry = Registry()


def handler(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated async generator as the job handler called `name`."""

    def register(function: Handler) -> Handler:
        registry.register(name, function)
        return function

    return register


def load_handlers(modules: tuple[str, ...]) -> None:
    """Import user handler modules and `streamer.handlers` entry points so they register."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            missing = error.name or ""
            if module != missing and not module.startswith(missing + "."):
                raise  # something the handlers import is missing: the traceback says what
            raise SettingsError(
                f"PRODUCER_HANDLER_MODULES: no module {module!r} on the producer's path "
                f"(no {missing!r}); install the package, or add its directory to PYTHONPATH"
            ) from None
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry_point.load()
        if callable(loaded) and entry_point.name not in registry.names:
            registry.register(entry_point.name, loaded)


def int_param(ctx: JobContext, name: str, default: int, low: int, high: int) -> int:
    """An integer parameter within [low, high]; PermanentError otherwise."""
    raw = ctx.params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PermanentError(f"param {name}={raw[:40]!r} is not an integer") from None
    if not low <= value <= high:
        raise PermanentError(f"param {name}={value} is outside {low}..{high}")
    return value


@handler("produce")
async def produce(ctx: JobContext) -> AsyncIterator[bytes]:
    """`count` chunks (100) of `DATA <i>`, `interval_ms` (100) apart, padded to `size` bytes."""
    count = int_param(ctx, "count", 100, 0, 100_000_000)
    interval = int_param(ctx, "interval_ms", 100, 0, 3_600_000) / 1000
    size = int_param(ctx, "size", 0, 0, 256 * 1024 * 1024)
    for index in range(ctx.start, count):
        if index > ctx.start and interval:
            await asyncio.sleep(interval)
        yield f"DATA {index}".encode().ljust(size, b".")
