"""Pulls jobs from the work queue and runs them: publish, keep alive, retry, stop, release."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
from collections.abc import AsyncIterator

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from streamer_common import frames
from streamer_common.natsio import stream_state
from streamer_common.pull import ConsumerGone, PullConsumer
from streamer_common.topology import JOBS_CONSUMER, TopologyKeeper, job_subject, stream_missing
from streamer_producer.handlers import JobContext, PermanentError, Registry
from streamer_producer.interest import ReaderWatch
from streamer_producer.observe import JobTelemetry
from streamer_producer.publisher import (
    LostOwnership,
    PublishOutage,
    PublishRefused,
    StreamWriter,
    pump,
)
from streamer_producer.settings import ProducerSettings

logger = logging.getLogger(__name__)

_STOP_WAIT = 10.0


class Outcome(enum.Enum):
    """How one attempt at a job ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    RETRY = "retry"
    UNREAD = "unread"
    RELEASED = "released"
    LOST = "lost"


def jobs_consumer_config(settings: ProducerSettings) -> ConsumerConfig:
    """The durable pull consumer every producer shares on the jobs work queue."""
    return ConsumerConfig(
        durable_name=JOBS_CONSUMER,
        filter_subject=job_subject("*"),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=float(settings.ack_wait),
        max_deliver=-1,
        max_ack_pending=-1,
    )


class JobRunner:
    """Runs one delivered job message to an outcome and settles the message accordingly."""

    def __init__(
        self,
        nc: Client,
        settings: ProducerSettings,
        registry: Registry,
        abandon: asyncio.Event,
        telemetry: JobTelemetry,
        readers: ReaderWatch,
    ) -> None:
        self._nc = nc
        self._settings = settings
        self._registry = registry
        self._abandon = abandon
        self._telemetry = telemetry
        self._readers = readers

    async def run(self, msg: Msg) -> Outcome:
        """Run the job in `msg`; the message is acked, nak'ed or left to its new owner."""
        try:
            job = frames.Job.decode(msg.data)
        except (ValueError, KeyError) as error:
            logger.error("dropping malformed job message", extra={"error": str(error)})
            await msg.term()
            return Outcome.FAILED
        attempt = msg.metadata.num_delivered
        extra = {"stream_id": job.id, "job": job.job, "attempt": attempt}
        with self._telemetry.running(msg, job, attempt) as observed:
            logger.info("job started", extra=extra)
            async with _keepalive(msg, self._settings.ack_wait / 3):
                try:
                    outcome = await self._attempt(job, attempt)
                except Exception:
                    logger.warning("job attempt failed", exc_info=True, extra=extra)
                    outcome = Outcome.RETRY
            await self._settle(msg, outcome, attempt)
            observed.outcome = outcome.value
            logger.info("job ended", extra={**extra, "outcome": outcome.value})
        return outcome

    async def _attempt(self, job: frames.Job, attempt: int) -> Outcome:
        state = await stream_state(self._nc, self._settings.data_stream, job.id)
        if state.finished:
            return Outcome.COMPLETED
        writer = StreamWriter(
            self._nc,
            self._settings.data_stream,
            job.id,
            state.position,
            state.subject_sequence,
            max_message_bytes=self._settings.max_message_bytes,
            metrics=self._telemetry.metrics,
        )
        handler = self._registry.get(job.job)
        if handler is None:
            known = ", ".join(self._registry.names)
            return await self._fail(writer, f"unknown job {job.job!r} (known: {known})")
        context = JobContext(job.id, job.params, state.position.chunk, attempt)
        chunks = handler(context)
        if not hasattr(chunks, "__anext__"):  # `async def` without `yield`, or a list, say
            if inspect.iscoroutine(chunks):
                chunks.close()  # never to be awaited
            self._telemetry.handler_error(job.job)
            return await self._fail(
                writer,
                f"the job handler returned a {type(chunks).__name__}, not an async iterator "
                "of bytes: make it an async generator (`async def` that `yield`s its chunks)",
            )
        with self._telemetry.publishing(job.id, writer):
            return await self._race(job, attempt, writer, chunks)

    async def _race(
        self, job: frames.Job, attempt: int, writer: StreamWriter, chunks: AsyncIterator[bytes]
    ) -> Outcome:
        stop = asyncio.Event()
        work = asyncio.ensure_future(
            pump(
                chunks,
                writer,
                max_part=self._settings.max_part_bytes,
                max_batch=self._settings.max_part_bytes,
                stop=stop,
            )
        )
        unread = asyncio.ensure_future(self._readers.wait_until_unread(job.id))
        abandon = asyncio.ensure_future(self._abandon.wait())
        try:
            await asyncio.wait({work, unread, abandon}, return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            # The publish in flight completes (bounded by its own timeouts); only a
            # writer stuck past that is cancelled.
            await asyncio.wait({work}, timeout=_STOP_WAIT)
        finally:
            for task in (work, unread, abandon):
                task.cancel()
            with contextlib.suppress(BaseException):
                await work
        try:
            if work.done() and not work.cancelled() and work.result():
                await writer.mark(frames.END)
                return Outcome.COMPLETED
            if unread.done() and not unread.cancelled():
                await writer.mark(frames.STOPPED)
                return Outcome.UNREAD
            return Outcome.RELEASED
        except LostOwnership as lost:
            logger.warning("job taken over", extra={"stream_id": job.id, "why": str(lost)})
            return Outcome.LOST
        except PermanentError as error:
            self._telemetry.handler_error(job.job)
            return await self._fail(writer, str(error))
        except PublishOutage as error:
            logger.warning("publishing stalled", extra={"stream_id": job.id, "error": str(error)})
            return Outcome.RETRY
        except PublishRefused as error:
            # Not the handler's doing: the job is retried, and fails as any would at the last
            # attempt, with a message that says why (the marker may be refused too: retried).
            logger.warning(
                "JetStream refused a publish", extra={"stream_id": job.id, "error": str(error)}
            )
            if attempt >= self._settings.max_attempts:
                return await self._fail(
                    writer,
                    f"JetStream refused to store its chunks ({error}) after {attempt} attempts",
                )
            return Outcome.RETRY
        except Exception as error:
            logger.warning("job handler failed", exc_info=True, extra={"stream_id": job.id})
            self._telemetry.handler_error(job.job)
            if attempt >= self._settings.max_attempts:
                return await self._fail(writer, f"{error} (after {attempt} attempts)")
            return Outcome.RETRY

    async def _fail(self, writer: StreamWriter, message: str) -> Outcome:
        await writer.mark(frames.FAILED, message)
        return Outcome.FAILED

    async def _settle(self, msg: Msg, outcome: Outcome, attempt: int) -> None:
        with contextlib.suppress(Exception):
            if outcome is Outcome.RETRY:
                backoff = self._settings.retry_backoff
                await msg.nak(delay=backoff[min(attempt, len(backoff)) - 1] if backoff else None)
            elif outcome is Outcome.RELEASED:
                await msg.nak()
            elif outcome is not Outcome.LOST:
                await msg.ack()


@contextlib.asynccontextmanager
async def _keepalive(msg: Msg, every: float) -> AsyncIterator[None]:
    """Tell JetStream the job is still being worked on, so long jobs are not redelivered."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


class Worker:
    """Runs up to `concurrency` jobs at once, pulled by one request for the free slots.

    One pull request at a time asks for as many jobs as there are free slots, so an idle
    producer keeps one request waiting at the server however high its concurrency, and
    never holds a job it cannot start.
    """

    def __init__(
        self,
        nc: Client,
        settings: ProducerSettings,
        registry: Registry,
        telemetry: JobTelemetry,
        readers: ReaderWatch,
        keeper: TopologyKeeper | None = None,
    ) -> None:
        self._nc = nc
        self._settings = settings
        self._keeper = keeper
        self._abandon = asyncio.Event()
        self._readers = readers
        self._runner = JobRunner(nc, settings, registry, self._abandon, telemetry, self._readers)
        self._jobs: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self.running = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Pull and run jobs until `stop`; then give running jobs the grace period."""
        await self._readers.start()
        try:
            await self._work(stop)
        finally:
            await self._readers.stop()

    async def _work(self, stop: asyncio.Event) -> None:
        settings = self._settings
        async with PullConsumer(
            self._nc,
            settings.jobs_stream,
            JOBS_CONSUMER,
            batch=settings.concurrency,
            max_bytes=settings.max_message_bytes * 2,
            expires=1.0,
        ) as puller:
            while not stop.is_set():
                free = settings.concurrency - self.running
                if not free:
                    await self._until_a_slot_frees(stop)
                    continue
                puller.batch = free
                for msg in await self._fetch(puller, stop):
                    if stop.is_set():  # fetched as shutdown began: another producer takes it
                        await msg.nak()
                        continue
                    self._start(msg)
            for msg in await puller.release(timeout=2.0):
                await msg.nak()
        if not self._jobs:
            return
        _, pending = await asyncio.wait(self._jobs, timeout=settings.shutdown_grace)
        if pending:
            logger.info("grace period over, releasing jobs", extra={"jobs": self.running})
            self._abandon.set()
            await asyncio.wait(pending, timeout=5)

    def _start(self, msg: Msg) -> None:
        self.running += 1
        job = asyncio.create_task(self._run(msg))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _run(self, msg: Msg) -> None:
        try:
            await self._runner.run(msg)
        except Exception:
            # The job is not acknowledged, so NATS redelivers it after the ack wait.
            logger.exception("job runner failed", extra={"subject": msg.subject})
        finally:
            self.running -= 1
            self._slot_freed.set()

    async def _until_a_slot_frees(self, stop: asyncio.Event) -> None:
        self._slot_freed.clear()
        freed = asyncio.ensure_future(self._slot_freed.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({freed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            freed.cancel()
            stopped.cancel()

    async def _fetch(self, puller: PullConsumer, stop: asyncio.Event) -> list[Msg]:
        try:
            return await puller.fetch(timeout=1.0)
        except Exception as error:
            logger.warning("cannot fetch jobs", extra={"error": repr(error)})
            if self._keeper and (isinstance(error, ConsumerGone) or stream_missing(error)):
                self._keeper.recheck()  # the jobs stream or its consumer was removed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            return []
