"""Tumbling rule windows, by ``occurred_at``, in the configured zone (CONTRACT.md, Rules).

A window of length ``L`` covers the local wall-clock span ``[S, S + L)`` where ``S`` is a whole multiple of
``L`` after :data:`EPOCH_LOCAL` (1970-01-05 00:00 local, a Monday): ``1h`` windows start on the hour, ``1d``
at midnight, ``7d`` on Monday. The window of an instant depends on that instant alone (a pure function of
``occurred_at``), so an event that arrives late still counts in the window where it happened.

Every instant's *window index* is ``n = floor((local wall clock - EPOCH_LOCAL) / L)``. Windows are returned
as aware UTC ``[start, end)`` intervals, and they partition the timeline: every instant lies in exactly one
window, and the window that follows a window starts exactly where it ends.

Daylight saving (or any other change of the zone's UTC offset) is handled by one rule:

    **A window is a maximal stretch of time during which the window index stays the same.**

What that means in practice:

* Without an offset change in sight a window is simply ``[S, S + L)`` local, ``L`` long.
* Spring forward (local times skipped): the window is shorter by the skipped part, e.g. the ``1d``
  window of a 23-hour day is that local day, midnight to midnight, 23 h long. A window start that does
  not exist locally (``02:00`` in a gap ``02:00 -> 03:00``; midnight in America/Havana's
  ``00:00 -> 01:00``) is replaced by the first instant after the gap (the transition instant). Windows
  that lie wholly inside the gap (``15m`` windows from 02:00 to 03:00) do not exist.
* Fall back (local times repeated): if the clock is set back *into the window it is in* (the window
  covers the whole repeated range), the window simply lasts longer: the ``1d`` window of a 25-hour day
  is that local day, 25 h long; the ``1h`` window 01:00-02:00 on America/New_York's fall-back night
  (02:00 EDT -> 01:00 EST) is 2 h long; in Australia/Lord_Howe (02:00 -> 01:30) the 01:00-02:00
  window is 1.5 h long. This is the wall-clock window with both ends converted with ``fold=0``.
  If the clock is set back into *another* window, the transition instant is a boundary and the
  repeated local span is a second, separate window with its own UTC start: ``15m`` windows on New
  York's fall-back night are all 15 min long, and the four local 01:00-02:00 quarter hours each occur
  twice. Likewise a midnight that occurs twice (America/Havana, 01:00 -> 00:00) does not split the day.
  So two windows can share a local label; identify windows by their UTC ``start`` (as alerts do).

Why this rule: the window stays a function of the local reading (two instants of one window always read
the same local window ``[S, S + L)``) and of ``occurred_at`` alone, windows never overlap or leave gaps, a day
is always "that local day, midnight to midnight" (23, 24 or 25 h, never split), and time that the clock spends
continuously inside one local window is never cut in two. Its boundaries are exactly the instants at which
the local clock, running forward, reaches a whole multiple of ``L``, plus every offset change at which the
window index changes. (The alternative "a new window at every instant the clock reads a multiple of ``L``"
would make New York's fall-back 01:00-02:00 two 1-h windows, but would also split Havana's day with two
midnights into a 1-h and a 24-h "day".)

Offset changes are located by sampling the zone every :data:`_SCAN_STEP` (6 h) and bisecting to the
microsecond, cached per (zone, UTC year). Two changes within one 6-h step would be missed, but since 1970
tzdata never has two closer than 7 days (Asia/Gaza, 2040s); a window with several changes inside is
handled. Away from offset changes, and always in zones without them (Asia/Shanghai since 1991, UTC), a
call costs two zone conversions, a little arithmetic and two cached look-ups (a few microseconds).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache

__all__ = ["EPOCH_LOCAL", "Window", "WindowGrid", "offsets_between", "previous", "window_of", "windows_between"]

EPOCH_LOCAL = datetime(1970, 1, 5)
"""Local wall-clock origin of every window grid: Monday 1970-01-05 00:00 (naive: it is local time)."""

_UTC = UTC
_TICK = timedelta(microseconds=1)
_ZERO = timedelta(0)
_SCAN_STEP = timedelta(hours=6)

# Internally every datetime is aware UTC (cheap arithmetic and comparisons, no ``replace``). Local wall-clock
# readings are kept as UTC-labelled datetimes too, relative to ``_EPOCH``: ``wall = instant + offset``.
_EPOCH = EPOCH_LOCAL.replace(tzinfo=_UTC)

# An offset change: (instant, offset before it, offset from it on).
_Transition = tuple[datetime, timedelta, timedelta]


@dataclass(frozen=True, slots=True)
class Window:
    """A tumbling window ``[start, end)``; both ends aware, in UTC."""

    start: datetime
    end: datetime

    def contains(self, t: datetime) -> bool:
        """Whether ``start <= t < end`` (``t`` must be aware)."""
        return self.start <= t < self.end

    @property
    def duration(self) -> timedelta:
        """Real elapsed time covered (``L``, except around offset changes)."""
        return self.end - self.start


class WindowGrid:
    """The windows met so far, sorted: since windows partition the timeline, an instant is looked up by
    bisection and window_of (a few microseconds) runs once per window instead of once per event."""

    __slots__ = ("_ends", "_starts", "by_start", "length", "zone")

    def __init__(self, length: timedelta, zone: tzinfo) -> None:
        self.length = length
        self.zone = zone
        self._starts: list[datetime] = []
        self._ends: list[datetime] = []
        self.by_start: dict[datetime, Window] = {}

    def window(self, at: datetime) -> Window:
        """The window holding the aware instant ``at`` (``window_of``, remembered)."""
        i = bisect_right(self._starts, at) - 1
        if i >= 0 and at < self._ends[i]:
            return self.by_start[self._starts[i]]
        found = window_of(at, self.length, self.zone)
        self._starts.insert(i + 1, found.start)
        self._ends.insert(i + 1, found.end)
        self.by_start[found.start] = found
        return found

    def after(self, window: Window, count: int) -> list[Window]:
        """The ``count`` windows right after ``window``, nearest first."""
        found: list[Window] = []
        for _ in range(count):
            window = self.window(window.end)
            found.append(window)
        return found

    def before(self, window: Window, count: int) -> list[Window]:
        """The ``count`` windows right before ``window``, nearest first (``previous``)."""
        found: list[Window] = []
        for _ in range(count):
            window = self.window(window.start - _TICK)
            found.append(window)
        return found


def window_of(at: datetime, length: timedelta, zone: tzinfo) -> Window:
    """The window of length ``length`` in ``zone`` that contains the aware instant ``at``."""
    _check_aware(at, "at")
    _check_length(length)
    u = at.astimezone(_UTC)
    off = _offset(zone, at)
    n = (u + off - _EPOCH) // length
    start_wall = _EPOCH + n * length
    start = _find_start(zone, u, off, n, start_wall, length)
    end = _find_end(zone, u, off, n, start_wall + length, length)
    return Window(start, end)


def previous(window: Window, count: int, length: timedelta, zone: tzinfo) -> list[Window]:
    """The ``count`` windows right before ``window``, nearest first (a ``spike`` rule's baseline)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    result: list[Window] = []
    current = window
    for _ in range(count):
        current = window_of(current.start - _TICK, length, zone)
        result.append(current)
    return result


def windows_between(start: datetime, end: datetime, length: timedelta, zone: tzinfo) -> Iterator[Window]:
    """Every window that overlaps ``[start, end)``, in order (none when ``end <= start``)."""
    _check_aware(start, "start")
    _check_aware(end, "end")
    _check_length(length)
    return _iter_windows(start, end, length, zone)


def _iter_windows(start: datetime, end: datetime, length: timedelta, zone: tzinfo) -> Iterator[Window]:
    if end <= start:
        return
    window = window_of(start, length, zone)
    while window.start < end:
        yield window
        window = window_of(window.end, length, zone)


def offsets_between(zone: tzinfo, lo: datetime, hi: datetime) -> list[tuple[datetime | None, timedelta]]:
    """The UTC offsets ``zone`` uses over ``[lo, hi)``: ``(until, offset)`` spans in order, the last ``until`` None.

    For databases without time zones (SQLite): local time is UTC plus the offset of the span an instant is in.
    """
    _check_aware(lo, "lo")
    _check_aware(hi, "hi")
    spans: list[tuple[datetime | None, timedelta]] = []
    off = _offset(zone, lo)
    for at, _, after in _transitions(zone, lo.astimezone(_UTC), hi.astimezone(_UTC)):
        spans.append((at, off))
        off = after
    spans.append((None, off))
    return spans


def _check_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {value.isoformat()}")


def _check_length(length: timedelta) -> None:
    if length <= _ZERO:
        raise ValueError(f"window length must be positive, got {length}")


def _offset(zone: tzinfo, u: datetime) -> timedelta:
    """UTC offset of ``zone`` at the aware instant ``u``."""
    off = u.astimezone(zone).utcoffset()
    if off is None:
        raise ValueError(f"zone {zone!r} gives no UTC offset")
    return off


def _find_start(zone: tzinfo, u: datetime, off: timedelta, n: int, start_wall: datetime, length: timedelta) -> datetime:
    """Earliest instant ``s <= u`` such that every instant in ``[s, u]`` has window index ``n``.

    Invariant: ``hi`` has index ``n`` and offset ``off``, and so does everything from ``hi`` to ``u``.
    """
    hi = u
    while True:
        candidate = start_wall - off  # where the clock reads the window start, if ``off`` holds back to it
        changes = _transitions(zone, candidate - _TICK, hi)  # a change right at ``candidate`` counts too
        if not changes:
            return candidate
        at, before, _ = changes[-1]
        if (at - _TICK + before - _EPOCH) // length != n:
            return at  # the clock jumped into this window (spring forward, or back from another window)
        off, hi = before, at - _TICK  # set back within the window: it goes on before the change


def _find_end(zone: tzinfo, u: datetime, off: timedelta, n: int, end_wall: datetime, length: timedelta) -> datetime:
    """First instant ``e > u`` whose window index is not ``n`` (all of ``[u, e)`` has index ``n``)."""
    lo = u
    while True:
        candidate = end_wall - off  # where the clock reads the window end, if ``off`` holds up to it
        changes = _transitions(zone, lo, candidate)
        if not changes:
            return candidate
        at, _, after = changes[0]
        if (at + after - _EPOCH) // length != n:
            return at  # the clock leaves this window at the change
        off, lo = after, at  # set back (or forward) within the window: it goes on after the change


def _transitions(zone: tzinfo, lo: datetime, hi: datetime) -> list[_Transition]:
    """Offset changes at instants in ``(lo, hi]``, in order."""
    if hi <= lo:
        return []
    if lo.year == hi.year:  # the usual case; most years of most zones have no change near a given instant
        changes = _year_transitions(zone, lo.year)
        return [t for t in changes if lo < t[0] <= hi] if changes else []
    return [t for year in range(lo.year, hi.year + 1) for t in _year_transitions(zone, year) if lo < t[0] <= hi]


@lru_cache(maxsize=4096)
def _year_transitions(zone: tzinfo, year: int) -> tuple[_Transition, ...]:
    """Offset changes at instants in ``(Jan 1 year, Jan 1 year + 1]`` UTC, found by sampling and bisection."""
    first = datetime(year, 1, 1, tzinfo=_UTC)
    last = datetime(year + 1, 1, 1, tzinfo=_UTC) if year < datetime.max.year else datetime.max.replace(tzinfo=_UTC)
    found: list[_Transition] = []
    t, off = first, _offset(zone, first)
    while t < last:
        nxt = min(t + _SCAN_STEP, last)
        nxt_off = _offset(zone, nxt)
        if nxt_off != off:
            _locate(zone, t, off, nxt, nxt_off, found)
        t, off = nxt, nxt_off
    return tuple(found)


def _locate(
    zone: tzinfo, lo: datetime, lo_off: timedelta, hi: datetime, hi_off: timedelta, found: list[_Transition]
) -> None:
    """Append the offset changes in ``(lo, hi]`` given ``offset(lo) != offset(hi)``, to the microsecond."""
    while True:
        a, b = lo, hi
        while b - a > _TICK:
            mid = a + (b - a) // 2
            if _offset(zone, mid) == lo_off:
                a = mid
            else:
                b = mid
        after = _offset(zone, b)
        found.append((b, lo_off, after))
        if after == hi_off:
            return
        lo, lo_off = b, after
