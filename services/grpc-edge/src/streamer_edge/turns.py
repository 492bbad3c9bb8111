"""Keeps the edge's event-loop turns short while streams relay, so new calls still get in.

A turn of the event loop runs one step of every task that is ready. When the edge is the
bottleneck every relaying stream is ready every turn, and one step builds and writes a
whole batch, so turns grow with the number of busy streams. grpc.aio takes one new call
per turn or two, and a call or a health check needs several turns more before it is
answered: under a saturating load they waited for as long as the load lasted.

Relays pass a checkpoint before each step. While the current turn is within the budget a
step goes ahead; past it, the step waits for a later turn, in the order steps arrived.
Once the steps it woke have run, a turn wakes as many waiting steps as it expects room
for (twice as many after a turn within the budget, half as many after one over it); a
woken step that finds its turn already over budget waits again, keeping its place.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

BUDGET = 0.005  # seconds a turn may take before relay steps wait for later turns
_MOST_PER_TURN = 1024


class TurnBudget:
    """Times each turn of the loop while relays pass checkpoints, and spreads their steps."""

    def __init__(self, budget: float = BUDGET, on_hold: Callable[[], None] = lambda: None) -> None:
        self._budget = budget
        self._on_hold = on_hold  # called once for each step that waits
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._tickets = itertools.count()
        self._turn_began = 0.0
        self._marking = False
        self._checked = False
        self._per_turn = 8
        self._woken = 0  # steps woken by a mark that have not run yet
        self._measure = False  # the last turn ran steps a mark woke: adjust `_per_turn`

    async def checkpoint(self) -> None:
        """Return at once, or on a later turn if this one has no room left for a step."""
        self._checked = True
        if not self._marking:
            self._marking = True
            self._turn_began = time.perf_counter()
            asyncio.get_running_loop().call_soon(self._mark)
            return
        if not self._waiting and self._has_room():
            return
        ticket = next(self._tickets)
        self._on_hold()
        while True:
            waiter = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (ticket, waiter))
            try:
                await waiter
            finally:
                if waiter.done() and not waiter.cancelled():
                    self._woken -= 1
            if self._has_room():
                return

    def _has_room(self) -> bool:
        return time.perf_counter() - self._turn_began <= self._budget

    def _mark(self) -> None:
        # Runs once per turn, near its start, for as long as turns pass checkpoints.
        if not (self._checked or self._waiting or self._woken):
            self._marking = False
            return
        if self._measure and not self._woken:
            over = not self._has_room()
            self._per_turn = max(1, self._per_turn // 2) if over else self._per_turn * 2
            self._per_turn = min(self._per_turn, _MOST_PER_TURN)
        self._checked = False
        self._turn_began = time.perf_counter()
        # The next mark goes first, so the steps woken here find a fresh clock next turn.
        asyncio.get_running_loop().call_soon(self._mark)
        if self._woken:
            return  # those woken last turn run this turn: wake more once they have
        while self._waiting and self._woken < self._per_turn:
            _, waiter = heapq.heappop(self._waiting)
            if not waiter.done():
                waiter.set_result(None)
                self._woken += 1
        self._measure = self._woken > 0
