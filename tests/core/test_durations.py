from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention_core.durations import add_months, parse_duration

UTC = timezone.utc


@pytest.mark.parametrize("text,months,delta", [
    ("90d", 0, timedelta(days=90)), ("12w", 0, timedelta(weeks=12)), ("18mo", 18, timedelta(0)),
    ("7y", 84, timedelta(0)), ("P90D", 0, timedelta(days=90)), ("P1Y6M", 18, timedelta(0)),
    ("P2W", 0, timedelta(weeks=2)), ("PT36H", 0, timedelta(hours=36)), ("36h", 0, timedelta(hours=36)),
    ("p1y", 12, timedelta(0)),
])
def test_parse_accepts_short_and_iso_forms(text, months, delta):
    d = parse_duration(text)
    assert (d.months, d.delta) == (months, delta)


@pytest.mark.parametrize("text", ["", "90", "d", "1.5y", "P", "PT", "-3d", "3 years", None, 90, "P1Y2"])
def test_parse_rejects_with_a_message_that_shows_accepted_forms(text):
    with pytest.raises(ValueError, match="expected a duration like 90d"):
        parse_duration(text)


def test_feb_29_plus_one_year_takes_the_later_date():
    start = datetime(2024, 2, 29, 12, tzinfo=UTC)
    # The later day, from its start: the period runs to the end of February (monotonic, see durations).
    assert parse_duration("1y").after(start) == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_duration("4y").after(start) == datetime(2028, 2, 29, 12, tzinfo=UTC)


@pytest.mark.parametrize("start,months,expected", [
    ((2023, 1, 31), 1, (2023, 3, 1)), ((2024, 1, 31), 1, (2024, 3, 1)), ((2024, 1, 30), 1, (2024, 3, 1)),
    ((2024, 1, 29), 1, (2024, 2, 29)), ((2024, 3, 31), 1, (2024, 5, 1)), ((2024, 12, 31), 2, (2025, 3, 1)),
    ((2024, 11, 30), 1, (2024, 12, 30)), ((2024, 12, 15), 1, (2025, 1, 15)), ((2024, 3, 31), -1, (2024, 3, 1)),
])
def test_month_ends_roll_forward(start, months, expected):
    assert add_months(datetime(*start, tzinfo=UTC), months) == datetime(*expected, tzinfo=UTC)


instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC))
durations = st.one_of(
    st.integers(0, 400).map(lambda n: f"{n}mo"), st.integers(0, 30).map(lambda n: f"{n}y"),
    st.integers(0, 5000).map(lambda n: f"{n}d"), st.tuples(st.integers(0, 9), st.integers(0, 11),
                                                           st.integers(0, 40)).map(lambda t: f"P{t[0]}Y{t[1]}M{t[2]}D"))


@given(instants, durations)
def test_retention_is_never_early(start, text):
    """The due date is never before the same day-of-month in the target month."""
    d = parse_duration(text)
    due = d.after(start)
    assert due >= start
    index = start.year * 12 + start.month - 1 + d.months
    year, month = divmod(index, 12)
    earliest = datetime(year, month + 1, 1, tzinfo=UTC)  # the first of the target month
    assert due - d.delta >= earliest
    if start.day <= 28:  # a day that exists in every month is kept exactly
        assert due - d.delta == start.replace(year=year, month=month + 1)


@given(instants, durations)
def test_latest_start_is_the_exact_boundary(now, text):
    d = parse_duration(text)
    cut = d.latest_start_due_by(now)
    assert d.after(cut) <= now
    assert d.after(cut + timedelta(microseconds=1)) > now


@pytest.mark.parametrize("text", ["P0５M", "９0d", "P0W99999999D", "P780350710W", "1001y", "P12001M"])
def test_non_ascii_digits_and_calendar_overflows_are_refused(text):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)
