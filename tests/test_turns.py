"""The edge's turn budget lets new calls in between relay steps when every stream is busy."""

from __future__ import annotations

import asyncio
import time

import pytest

from streamer_edge.turns import TurnBudget

STEP = 0.002  # seconds of CPU one relay step takes
RELAYS = 20
STEPS = 5
CALL_TURNS = 4  # turns a new call needs before it is served


def busy(seconds: float) -> None:
    """Hold the event loop, as building and writing a batch does."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def relay(turns: TurnBudget, name: int, log: list[tuple[int, int]]) -> None:
    """A stream relaying STEPS batches; each write makes it ready again a turn later."""
    for step in range(STEPS):
        await turns.checkpoint()
        busy(STEP)
        log.append((name, step))
        await asyncio.sleep(0)


async def new_call(log: list[tuple[int, int]]) -> int:
    """A call that needs CALL_TURNS turns of the loop; how many relay steps ran before it."""
    for _ in range(CALL_TURNS):
        await asyncio.sleep(0)
    return len(log)


async def steps_before_call(turns: TurnBudget) -> tuple[int, list[tuple[int, int]]]:
    log: list[tuple[int, int]] = []
    relays = [asyncio.create_task(relay(turns, name, log)) for name in range(RELAYS)]
    waited = await new_call(log)
    await asyncio.gather(*relays)
    return waited, log


@pytest.mark.parametrize(
    ("budget", "most", "least", "held"),
    [
        pytest.param(0.005, 30, 0, True, id="within-budget"),
        pytest.param(60.0, RELAYS * STEPS, 50, False, id="no-budget-every-stream-steps-each-turn"),
    ],
)
async def test_a_new_call_waits_for_a_budget_of_steps_not_for_every_stream(
    budget: float, most: int, least: int, held: bool
) -> None:
    holds: list[None] = []
    waited, log = await steps_before_call(TurnBudget(budget, on_hold=lambda: holds.append(None)))

    assert least <= waited <= most, f"{waited} relay steps ran before the new call was served"
    for name in range(RELAYS):
        assert [step for who, step in log if who == name] == list(range(STEPS))
    assert 0 < len(holds) <= RELAYS * STEPS if held else not holds


async def test_steps_held_back_go_ahead_in_the_order_they_arrived() -> None:
    turns = TurnBudget(0.005)
    order: list[int] = []

    async def step(name: int) -> None:
        await turns.checkpoint()
        busy(STEP)
        order.append(name)

    await asyncio.gather(*(step(name) for name in range(RELAYS)))

    assert order == list(range(RELAYS))


async def test_a_step_cancelled_while_held_back_does_not_hold_up_the_others() -> None:
    turns = TurnBudget(0.005)
    log: list[tuple[int, int]] = []
    relays = [asyncio.create_task(relay(turns, name, log)) for name in range(RELAYS)]
    await asyncio.sleep(0)
    relays[-1].cancel()

    await asyncio.gather(*relays[:-1])

    assert len(log) >= (RELAYS - 1) * STEPS
    assert relays[-1].cancelled()


async def test_an_idle_edge_stops_timing_turns() -> None:
    turns = TurnBudget(0.005)
    await steps_before_call(turns)

    spent = time.process_time()
    await asyncio.sleep(0.3)

    assert time.process_time() - spent < 0.1, "the loop kept turning with nothing to relay"
