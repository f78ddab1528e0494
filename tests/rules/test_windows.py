"""Tumbling rule windows (app.rules.windows): alignment, edges, late events, daylight saving, partition property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.rules.windows import EPOCH_LOCAL, Window, WindowGrid, previous, window_of, windows_between

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
HAVANA = ZoneInfo("America/Havana")
SAO_PAULO = ZoneInfo("America/Sao_Paulo")

US = timedelta(microseconds=1)
M15 = timedelta(minutes=15)
H1 = timedelta(hours=1)
D1 = timedelta(days=1)
D7 = timedelta(days=7)


def local(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    *,
    zone: ZoneInfo = SHANGHAI,
    fold: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=zone, fold=fold)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def span(window: Window, zone: ZoneInfo) -> tuple[datetime, datetime]:
    return window.start.astimezone(zone), window.end.astimezone(zone)


def wall(t: datetime, zone: ZoneInfo) -> datetime:
    return t.astimezone(zone).replace(tzinfo=None)


# --- alignment in Asia/Shanghai -------------------------------------------------------------------------------


def test_hour_window_starts_on_the_hour() -> None:
    window = window_of(datetime.fromisoformat("2026-11-21T09:30:00+08:00"), H1, SHANGHAI)
    assert span(window, SHANGHAI) == (local(2026, 11, 21, 9), local(2026, 11, 21, 10))
    assert window == Window(utc(2026, 11, 21, 1), utc(2026, 11, 21, 2))
    assert window.start.tzinfo is UTC
    assert window.end.tzinfo is UTC
    assert window.duration == H1


def test_result_does_not_depend_on_the_offset_the_instant_is_written_in() -> None:
    written = [local(2026, 11, 21, 9, 30), utc(2026, 11, 21, 1, 30), local(2026, 11, 20, 20, 30, zone=NEW_YORK)]
    assert len({window_of(t, H1, SHANGHAI) for t in written}) == 1


def test_quarter_hour_windows() -> None:
    assert span(window_of(local(2026, 11, 21, 9, 44, 59), M15, SHANGHAI), SHANGHAI) == (
        local(2026, 11, 21, 9, 30),
        local(2026, 11, 21, 9, 45),
    )
    assert span(window_of(local(2026, 11, 21, 9, 45), M15, SHANGHAI), SHANGHAI) == (
        local(2026, 11, 21, 9, 45),
        local(2026, 11, 21, 10),
    )


def test_day_windows_start_at_local_midnight() -> None:
    before = window_of(local(2026, 11, 21, 23, 59, 59), D1, SHANGHAI)
    after = window_of(local(2026, 11, 22), D1, SHANGHAI)
    assert span(before, SHANGHAI) == (local(2026, 11, 21), local(2026, 11, 22))
    assert span(after, SHANGHAI) == (local(2026, 11, 22), local(2026, 11, 23))
    assert before != after
    assert before.end == after.start


def test_day_window_is_the_local_day_not_the_utc_day() -> None:
    window = window_of(utc(2026, 11, 21, 17), D1, SHANGHAI)  # 01:00 on the 22nd in Shanghai
    assert span(window, SHANGHAI) == (local(2026, 11, 22), local(2026, 11, 23))
    assert window == Window(utc(2026, 11, 21, 16), utc(2026, 11, 22, 16))
    assert window_of(utc(2026, 11, 21, 17), D1, UTC) == Window(utc(2026, 11, 21), utc(2026, 11, 22))


def test_week_windows_start_on_monday_midnight() -> None:
    window = window_of(local(2026, 11, 21, 9, 30), D7, SHANGHAI)  # a Saturday
    start, end = span(window, SHANGHAI)
    assert (start, end) == (local(2026, 11, 16), local(2026, 11, 23))
    assert start.weekday() == 0
    assert window_of(local(2026, 11, 23), D7, SHANGHAI).start == end  # Monday 00:00 opens the next week
    assert window_of(local(2026, 11, 22, 23, 59, 59), D7, SHANGHAI) == window  # Sunday night is still this week


def test_epoch_is_monday_1970_01_05() -> None:
    assert EPOCH_LOCAL == datetime(1970, 1, 5)
    assert EPOCH_LOCAL.weekday() == 0
    assert span(window_of(local(1970, 1, 5, 12), D7, SHANGHAI), SHANGHAI) == (local(1970, 1, 5), local(1970, 1, 12))
    assert span(window_of(local(1970, 1, 4, 12), D7, SHANGHAI), SHANGHAI) == (local(1969, 12, 29), local(1970, 1, 5))


def test_odd_lengths_are_multiples_of_the_length_after_the_epoch() -> None:
    window = window_of(local(2026, 11, 21, 9, 30), timedelta(hours=5), SHANGHAI)
    start = wall(window.start, SHANGHAI)
    assert (start - EPOCH_LOCAL) % timedelta(hours=5) == timedelta(0)
    assert window.duration == timedelta(hours=5)
    assert window.contains(local(2026, 11, 21, 9, 30))


# --- edges, late events, argument checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("length", [M15, H1, D1, D7])
def test_start_is_inclusive_and_end_exclusive(length: timedelta) -> None:
    window = window_of(local(2026, 11, 21, 9, 30), length, SHANGHAI)
    assert window.contains(window.start)
    assert window.contains(window.end - US)
    assert not window.contains(window.end)
    assert not window.contains(window.start - US)
    assert window_of(window.start, length, SHANGHAI) == window
    assert window_of(window.end - US, length, SHANGHAI) == window
    assert window_of(window.end, length, SHANGHAI).start == window.end
    assert window_of(window.start - US, length, SHANGHAI).end == window.start


def test_late_event_counts_in_the_window_where_it_happened() -> None:
    occurred = [local(2026, 11, 21, 9, 5), local(2026, 11, 21, 9, 55), local(2026, 11, 21, 11, 10)]
    late = local(2026, 11, 20, 9, 5)  # arrives last, happened a day earlier
    in_arrival_order = [window_of(t, H1, SHANGHAI) for t in [*occurred, late]]
    in_reverse_order = [window_of(t, H1, SHANGHAI) for t in reversed([*occurred, late])][::-1]
    assert in_arrival_order == in_reverse_order
    assert span(in_arrival_order[-1], SHANGHAI) == (local(2026, 11, 20, 9), local(2026, 11, 20, 10))
    assert in_arrival_order[0] == in_arrival_order[1] != in_arrival_order[2]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        window_of(datetime(2026, 11, 21, 9, 30), H1, SHANGHAI)
    with pytest.raises(ValueError, match="aware"):
        windows_between(datetime(2026, 11, 21), utc(2026, 11, 22), H1, SHANGHAI)
    with pytest.raises(ValueError, match="aware"):
        windows_between(utc(2026, 11, 21), datetime(2026, 11, 22), H1, SHANGHAI)


@pytest.mark.parametrize("length", [timedelta(0), -H1])
def test_non_positive_lengths_are_refused(length: timedelta) -> None:
    with pytest.raises(ValueError, match="positive"):
        window_of(utc(2026, 11, 21), length, SHANGHAI)


def test_negative_previous_count_is_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        previous(window_of(utc(2026, 11, 21), H1, SHANGHAI), -1, H1, SHANGHAI)


# --- previous / windows_between ------------------------------------------------------------------------------------


def test_previous_gives_contiguous_windows_nearest_first() -> None:
    window = window_of(local(2026, 11, 21, 1, 30), H1, SHANGHAI)
    baseline = previous(window, 4, H1, SHANGHAI)
    assert [span(w, SHANGHAI)[0] for w in baseline] == [
        local(2026, 11, 21, 0),
        local(2026, 11, 20, 23),
        local(2026, 11, 20, 22),
        local(2026, 11, 20, 21),
    ]
    assert baseline[0].end == window.start
    assert all(newer.start == older.end for newer, older in zip(baseline, baseline[1:], strict=False))
    assert previous(window, 0, H1, SHANGHAI) == []


def test_previous_across_a_dst_change_matches_window_of() -> None:
    window = window_of(local(2026, 3, 8, 4, zone=NEW_YORK), H1, NEW_YORK)
    baseline = previous(window, 4, H1, NEW_YORK)
    assert [span(w, NEW_YORK)[0].hour for w in baseline] == [3, 1, 0, 23]  # 02:00 does not exist that night
    for w in baseline:
        assert window_of(w.start, H1, NEW_YORK) == w


def test_windows_between_covers_the_range_exactly() -> None:
    start, end = local(2026, 11, 21, 9, 30), local(2026, 11, 21, 12)
    windows = list(windows_between(start, end, H1, SHANGHAI))
    assert [span(w, SHANGHAI) for w in windows] == [
        (local(2026, 11, 21, 9), local(2026, 11, 21, 10)),
        (local(2026, 11, 21, 10), local(2026, 11, 21, 11)),
        (local(2026, 11, 21, 11), local(2026, 11, 21, 12)),
    ]
    assert list(windows_between(start, start, H1, SHANGHAI)) == []
    assert list(windows_between(end, start, H1, SHANGHAI)) == []
    assert list(windows_between(start, start + US, H1, SHANGHAI)) == windows[:1]
    assert list(windows_between(start, end + US, H1, SHANGHAI))[-1].start == end


@pytest.mark.parametrize("zone", [SHANGHAI, NEW_YORK, BERLIN, LORD_HOWE])
@pytest.mark.parametrize("length", [M15, H1, D1, D7])
def test_windows_between_tiles_the_timeline(zone: ZoneInfo, length: timedelta) -> None:
    if length >= D1:
        ranges = [(utc(2026, 1, 1), utc(2027, 1, 1))]
    elif zone is SHANGHAI:
        ranges = [(utc(2026, 1, 1), utc(2026, 1, 15))]
    else:  # a few weeks around each of the year's two offset changes
        ranges = [(utc(2026, 3, 1), utc(2026, 4, 12)), (utc(2026, 9, 30), utc(2026, 11, 8))]
    for lo, hi in ranges:
        windows = list(windows_between(lo, hi, length, zone))
        assert windows[0].contains(lo)
        assert windows[-1].contains(hi - US)
        assert all(a.end == b.start for a, b in zip(windows, windows[1:], strict=False))
        assert all(w.start < w.end for w in windows)


# --- daylight saving -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "spring", "fall"),
    [(NEW_YORK, (2026, 3, 8), (2026, 11, 1)), (BERLIN, (2026, 3, 29), (2026, 10, 25))],
)
def test_day_windows_on_dst_days_are_the_local_day(
    zone: ZoneInfo, spring: tuple[int, int, int], fall: tuple[int, int, int]
) -> None:
    short = window_of(local(*spring, 12, zone=zone), D1, zone)
    assert span(short, zone) == (local(*spring, zone=zone), local(*spring, zone=zone) + D1)
    assert short.duration == timedelta(hours=23)
    long = window_of(local(*fall, 12, zone=zone), D1, zone)
    assert span(long, zone) == (local(*fall, zone=zone), local(*fall, zone=zone) + D1)
    assert long.duration == timedelta(hours=25)
    assert window_of(short.start - US, D1, zone).duration == D1
    assert window_of(long.end, D1, zone).duration == D1


def test_new_york_hour_windows_around_spring_forward() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z): the local hour 02:00-03:00 does not exist.
    windows = list(windows_between(utc(2026, 3, 8, 5), utc(2026, 3, 8, 9), H1, NEW_YORK))
    assert [(w.start, w.end) for w in windows] == [
        (utc(2026, 3, 8, 5), utc(2026, 3, 8, 6)),  # 00:00-01:00 EST
        (utc(2026, 3, 8, 6), utc(2026, 3, 8, 7)),  # 01:00-02:00 EST
        (utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)),  # 03:00-04:00 EDT
        (utc(2026, 3, 8, 8), utc(2026, 3, 8, 9)),  # 04:00-05:00 EDT
    ]
    assert span(windows[2], NEW_YORK)[0] == local(2026, 3, 8, 3, zone=NEW_YORK)


def test_new_york_hour_windows_around_fall_back() -> None:
    # 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z): the clock goes back into the 01:00-02:00 window, which lasts 2 h.
    windows = list(windows_between(utc(2026, 11, 1, 4), utc(2026, 11, 1, 9), H1, NEW_YORK))
    assert [(w.start, w.end) for w in windows] == [
        (utc(2026, 11, 1, 4), utc(2026, 11, 1, 5)),  # 00:00-01:00 EDT
        (utc(2026, 11, 1, 5), utc(2026, 11, 1, 7)),  # 01:00 EDT - 02:00 EST (01:00-02:00 local, twice)
        (utc(2026, 11, 1, 7), utc(2026, 11, 1, 8)),  # 02:00-03:00 EST
        (utc(2026, 11, 1, 8), utc(2026, 11, 1, 9)),  # 03:00-04:00 EST
    ]
    first_1_30 = local(2026, 11, 1, 1, 30, zone=NEW_YORK, fold=0)
    second_1_30 = local(2026, 11, 1, 1, 30, zone=NEW_YORK, fold=1)
    assert first_1_30.astimezone(UTC) == utc(2026, 11, 1, 5, 30)  # fold=0: EDT
    assert second_1_30.astimezone(UTC) == utc(2026, 11, 1, 6, 30)  # fold=1: EST
    assert window_of(first_1_30, H1, NEW_YORK) == window_of(second_1_30, H1, NEW_YORK) == windows[1]


def test_new_york_quarter_hours_around_fall_back_occur_twice() -> None:
    # The clock goes back from the 01:45-02:00 window into the 01:00-01:15 one: a new window starts at 06:00Z.
    windows = list(windows_between(utc(2026, 11, 1, 5), utc(2026, 11, 1, 7), M15, NEW_YORK))
    assert len(windows) == 8
    assert all(w.duration == M15 for w in windows)
    assert [wall(w.start, NEW_YORK).strftime("%H:%M") for w in windows] == ["01:00", "01:15", "01:30", "01:45"] * 2
    first_1_05 = window_of(local(2026, 11, 1, 1, 5, zone=NEW_YORK, fold=0), M15, NEW_YORK)
    second_1_05 = window_of(local(2026, 11, 1, 1, 5, zone=NEW_YORK, fold=1), M15, NEW_YORK)
    assert first_1_05 == Window(utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 15))
    assert second_1_05 == Window(utc(2026, 11, 1, 6), utc(2026, 11, 1, 6, 15))


def test_berlin_hour_windows_around_both_changes() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z); 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).
    spring = list(windows_between(utc(2026, 3, 28, 23), utc(2026, 3, 29, 3), H1, BERLIN))
    assert [wall(w.start, BERLIN).hour for w in spring] == [0, 1, 3, 4]
    assert all(w.duration == H1 for w in spring)
    fall = list(windows_between(utc(2026, 10, 24, 23), utc(2026, 10, 25, 3), H1, BERLIN))
    assert [wall(w.start, BERLIN).hour for w in fall] == [1, 2, 3]
    assert [w.duration for w in fall] == [H1, 2 * H1, H1]
    assert fall[1] == Window(utc(2026, 10, 25, 0), utc(2026, 10, 25, 2))


def test_lord_howe_half_hour_changes() -> None:
    # 2026-04-05 02:00 LHDT(+11) -> 01:30 LHST(+10:30) at 15:00Z; 2026-10-04 02:00 -> 02:30 at 15:30Z.
    fall = list(windows_between(utc(2026, 4, 4, 13), utc(2026, 4, 4, 17), H1, LORD_HOWE))
    assert [wall(w.start, LORD_HOWE).strftime("%H:%M") for w in fall] == ["00:00", "01:00", "02:00", "03:00"]
    assert [w.duration for w in fall] == [H1, timedelta(minutes=90), H1, H1]
    spring = list(windows_between(utc(2026, 10, 3, 14), utc(2026, 10, 3, 16), H1, LORD_HOWE))
    assert [w.start for w in spring] == [utc(2026, 10, 3, 13, 30), utc(2026, 10, 3, 14, 30), utc(2026, 10, 3, 15, 30)]
    assert [w.duration for w in spring] == [H1, H1, timedelta(minutes=30)]
    assert wall(spring[2].start, LORD_HOWE) == datetime(2026, 10, 4, 2, 30)  # 02:00 does not exist: first instant after
    quarters = list(windows_between(utc(2026, 4, 4, 14, 30), utc(2026, 4, 4, 15, 30), M15, LORD_HOWE))
    assert [wall(w.start, LORD_HOWE).strftime("%H:%M") for w in quarters] == ["01:30", "01:45", "01:30", "01:45"]
    assert all(w.duration == M15 for w in quarters)


def test_nonexistent_midnight_day_starts_at_the_first_instant_after_the_gap() -> None:
    # America/Sao_Paulo 2018-11-04 00:00 -> 01:00 (03:00Z): the day starts at 01:00 and is 23 h long.
    day = window_of(utc(2018, 11, 4, 12), D1, SAO_PAULO)
    assert day == Window(utc(2018, 11, 4, 3), utc(2018, 11, 5, 2))
    assert wall(day.start, SAO_PAULO) == datetime(2018, 11, 4, 1)
    assert window_of(day.start - US, D1, SAO_PAULO).end == day.start
    # America/Havana 2025-03-09 00:00 -> 01:00 (05:00Z).
    assert window_of(utc(2025, 3, 9, 12), D1, HAVANA) == Window(utc(2025, 3, 9, 5), utc(2025, 3, 10, 4))


def test_a_midnight_that_occurs_twice_does_not_split_the_day() -> None:
    # America/Havana 2025-11-02 01:00 CDT -> 00:00 CST (05:00Z): midnight happens twice, the day is 25 h.
    day = window_of(utc(2025, 11, 2, 12), D1, HAVANA)
    assert day == Window(utc(2025, 11, 2, 4), utc(2025, 11, 3, 5))
    assert window_of(local(2025, 11, 2, 0, 30, zone=HAVANA, fold=0), D1, HAVANA) == day
    assert window_of(local(2025, 11, 2, 0, 30, zone=HAVANA, fold=1), D1, HAVANA) == day


@pytest.mark.parametrize(
    ("zone", "day"), [(NEW_YORK, (2026, 3, 8)), (NEW_YORK, (2026, 11, 1)), (BERLIN, (2026, 3, 29))]
)
def test_week_windows_spanning_a_change(zone: ZoneInfo, day: tuple[int, int, int]) -> None:
    week = window_of(local(*day, 12, zone=zone), D7, zone)
    start, end = span(week, zone)
    assert start.weekday() == 0
    assert (start.time(), end.time()) == (datetime.min.time(), datetime.min.time())
    assert wall(week.end, zone) - wall(week.start, zone) == D7
    change = week.start.astimezone(zone).utcoffset() != (week.end - US).astimezone(zone).utcoffset()
    assert change
    assert week.duration in {D7 - H1, D7 + H1}
    assert window_of(week.end, D7, zone).duration == D7
    assert window_of(week.start - US, D7, zone).duration == D7


# --- brute-force cross-check and property --------------------------------------------------------------------------


def brute_force_windows(
    zone: ZoneInfo, length: timedelta, lo: datetime, hi: datetime
) -> list[tuple[datetime, datetime]]:
    """Maximal runs of minutes with the same local window index (every boundary here is on a whole minute)."""

    def index(t: datetime) -> int:
        return (wall(t, zone) - EPOCH_LOCAL) // length

    runs: list[tuple[datetime, datetime]] = []
    run_start, t = lo, lo
    while t < hi:
        nxt = t + timedelta(minutes=1)
        if nxt == hi or index(nxt) != index(t):
            runs.append((run_start, nxt))
            run_start = nxt
        t = nxt
    return runs


@pytest.mark.parametrize(
    ("zone", "around"),
    [
        (NEW_YORK, utc(2026, 3, 8, 7)),
        (NEW_YORK, utc(2026, 11, 1, 6)),
        (BERLIN, utc(2026, 3, 29, 1)),
        (BERLIN, utc(2026, 10, 25, 1)),
        (LORD_HOWE, utc(2026, 4, 4, 15)),
        (LORD_HOWE, utc(2026, 10, 3, 15, 30)),
        (HAVANA, utc(2025, 11, 2, 5)),
        (SAO_PAULO, utc(2018, 11, 4, 3)),
    ],
)
@pytest.mark.parametrize("length", [M15, H1, timedelta(minutes=90), D1])
def test_matches_brute_force_around_changes(zone: ZoneInfo, around: datetime, length: timedelta) -> None:
    lo, hi = around - D1 - timedelta(hours=6), around + D1 + timedelta(hours=6)
    first, last = window_of(lo, length, zone), window_of(hi - US, length, zone)
    expected = brute_force_windows(zone, length, first.start, last.end)
    got = [(w.start, w.end) for w in windows_between(lo, hi, length, zone)]
    assert got == expected


ZONES = [SHANGHAI, ZoneInfo("UTC"), NEW_YORK, BERLIN, LORD_HOWE]
LENGTHS = [M15, H1, D1, D7]


@cache
def offset_changes(zone: ZoneInfo, year: int) -> tuple[datetime, ...]:
    """Offset changes of ``zone`` in ``year``, by a daily scan and bisection to within a second."""
    changes: list[datetime] = []
    t = utc(year, 1, 1)
    while t.year == year:
        nxt = t + D1
        if t.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            a, b = t, nxt
            while b - a > timedelta(seconds=1):
                mid = a + (b - a) / 2
                if mid.astimezone(zone).utcoffset() == a.astimezone(zone).utcoffset():
                    a = mid
                else:
                    b = mid
            changes.append(b)
        t = nxt
    return tuple(changes)


@st.composite
def instants(draw: st.DrawFn, zone: ZoneInfo) -> datetime:
    """Anywhere in 2000-2099, or (half the time) within a few days of one of the zone's offset changes."""
    anywhere = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)))
    changes = offset_changes(zone, anywhere.year)
    if not changes or draw(st.booleans()):
        return anywhere.replace(tzinfo=UTC)
    change = draw(st.sampled_from(changes))
    delta = draw(st.integers(min_value=-8 * 86_400_000_000, max_value=8 * 86_400_000_000))
    near = draw(st.sampled_from([delta, delta // 60_000_000 * 60_000_000, delta // 900_000_000 * 900_000_000]))
    return change + timedelta(microseconds=near)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), zone=st.sampled_from(ZONES), length=st.sampled_from(LENGTHS))
def test_windows_partition_the_timeline(data: st.DataObject, zone: ZoneInfo, length: timedelta) -> None:
    at = data.draw(instants(zone))
    window = window_of(at, length, zone)
    assert window.contains(at)
    assert window.start < window.end
    assert window.start.tzinfo is UTC
    assert window.end.tzinfo is UTC
    following = window_of(window.end, length, zone)
    preceding = window_of(window.start - US, length, zone)
    assert following.start == window.end
    assert preceding.end == window.start
    assert window_of(window.start, length, zone) == window
    assert window_of(window.end - US, length, zone) == window
    assert window_of(window.start + (window.end - window.start) / 2, length, zone) == window
    # A window starts where the clock reads a whole multiple of the length, or where the offset changes.
    on_grid = (wall(window.start, zone) - EPOCH_LOCAL) % length == timedelta(0)
    at_change = (window.start - US).astimezone(zone).utcoffset() != window.start.astimezone(zone).utcoffset()
    assert on_grid or at_change
    # Its real length is the nominal one, give or take the offset changes inside it.
    assert abs(window.duration - length) <= timedelta(hours=2)
    assert previous(following, 2, length, zone) == [window, preceding]


@pytest.mark.parametrize("zone_name", ["Asia/Shanghai", "America/New_York", "Australia/Lord_Howe"])
@pytest.mark.parametrize("length", [timedelta(minutes=15), timedelta(hours=1), timedelta(days=1)])
def test_a_grid_remembers_exactly_the_windows_window_of_finds(zone_name: str, length: timedelta) -> None:
    zone = ZoneInfo(zone_name)
    grid = WindowGrid(length, zone)
    start = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # New York's clocks go back at 06:00 UTC that day
    for minutes in list(range(0, 600, 7)) + list(range(599, 0, -13)):
        at = start + timedelta(minutes=minutes)
        assert grid.window(at) == window_of(at, length, zone)
    window = window_of(start + timedelta(hours=2), length, zone)
    assert grid.before(window, 5) == previous(window, 5, length, zone)
    after = grid.after(window, 5)
    assert [w.start for w in after] == [window.end, *(w.end for w in after[:-1])]
    assert after == [window_of(w.start, length, zone) for w in after]
