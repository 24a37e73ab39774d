"""Taking turns, spreads of ratios, and what every benchmark prints around them.

Two sides measured side after side swing by 10-15% on a shared 2-core VM (a
one-second slowdown lands on one side); measured part by part, taking turns
with the first side alternating, both sides of a pair see the same machine
and paired parts agree within 0.02. ``take_turns`` is that loop.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def take_turns(
    a: Callable[[int], T], b: Callable[[int], T], parts: int, flip: bool = False
) -> list[tuple[T, T]]:
    """``(a(i), b(i))`` for i in 0..parts-1, run back to back: ``a`` first on even
    parts (odd ones with ``flip``), ``b`` first on the others."""
    pairs = []
    for i in range(parts):
        if (i % 2) ^ flip:
            y = b(i)
            x = a(i)
        else:
            x = a(i)
            y = b(i)
        pairs.append((x, y))
    return pairs


async def take_turns_async(
    a: Callable[[int], Awaitable[T]], b: Callable[[int], Awaitable[T]], parts: int
) -> list[tuple[T, T]]:
    """``take_turns`` for coroutines."""
    pairs = []
    for i in range(parts):
        if i % 2:
            y = await b(i)
            x = await a(i)
        else:
            x = await a(i)
            y = await b(i)
        pairs.append((x, y))
    return pairs


def timed(fn: Callable[[int], Any]) -> Callable[[int], float]:
    """``fn`` as a part that returns its own seconds."""

    def part(i: int) -> float:
        start = time.perf_counter()
        fn(i)
        return time.perf_counter() - start

    return part


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile); one value is all three."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, statistics.median(values), q3


def fmt(x: float, spec: str = ".2f") -> str:
    return "-" if x != x else format(x, spec)  # NaN: not measured


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def check_ratio(label: str, ratio: float, target: float, at_least: bool = False) -> bool:
    """Print ``label = ratio (target <= t) met``; whether it was met."""
    ok = ratio >= target if at_least else ratio <= target
    op = ">=" if at_least else "<="
    print(f"  {label} = {ratio:5.2f}   (target {op} {target})  {verdict(ok)}")
    return ok


def print_header(header: str, extra: int = 0) -> None:
    """A table's header and the rule under it."""
    print(header)
    print("-" * (len(header) + extra))


def log(msg: str) -> None:
    """Progress on stderr, time-stamped; the results go to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser described by the first paragraph of ``doc``."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])


def add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")


def add_child(p: argparse.ArgumentParser, *metavar: str) -> None:
    """The hidden ``--child`` a script runs itself with, in a process of its own."""
    p.add_argument("--child", nargs=len(metavar), metavar=metavar, help=argparse.SUPPRESS)


def backends(choice: str) -> list[str]:
    return ["sqlite", "postgres"] if choice == "both" else [choice]
