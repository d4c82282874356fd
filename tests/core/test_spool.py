"""The spool gives back what was added, in the order it was added, whatever each row's shape."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from retention_core.model import Action, Decision, Record
from retention_core.spool import Spool

T0 = datetime(2020, 1, 1, tzinfo=timezone.utc)


def _pair(i: int) -> tuple[Record, Decision]:
    """Records of every shape, interleaved: plain, versioned, with a subject, a name that is not
    UTF-8 (a surrogate escape), a subject that is not UTF-8."""
    location = [f"d/f{i}.dat", f"d/v{i}", f"t/s{i}", f"d/\udcff{i}", f"t/u{i}"][i % 5]
    version = f"v{i}" if i % 5 == 1 else None
    subject = {2: f"alice{i}", 4: f"b\udcfe{i}"}.get(i % 5)
    record = Record("files", location, T0 + timedelta(microseconds=i), i, version, subject, "file", f"1:{i}:0:0:0")
    return record, Decision(Action.DELETE, "expired", ("H-1",) if i % 7 == 0 else (), T0 + timedelta(days=i))


def test_every_row_shape_reads_back_equal_and_in_order() -> None:
    spool = Spool()
    try:
        added = [_pair(i) for i in range(5003)]  # across buffer flushes and shape changes
        for record, decision in added:
            spool.add(record, decision)
        items = [item for batch in spool.due("files", 1000) for item in batch]
        assert [(i.record, i.decision) for i in items] == added
        assert [i.idx for i in items] == sorted(i.idx for i in items)
        assert spool.contains("files", "d/\udcff3", None) and spool.contains("files", "d/v1", "v1")
        assert spool.subject_status("b\udcfe4") == (1, 0, 0)
    finally:
        spool.close()
