"""The process row's columns are declared once: the declaration matches `Process`, and a
row decodes into the Process it came from. No database."""

from __future__ import annotations

import dataclasses

from corral.model import Change, ErrorInfo, Process, Status
from corral.storage import codec, columns


def test_the_declaration_names_processs_fields_in_order() -> None:
    columns.check_declaration()
    assert [c.name for c in columns.PROCESS] == [f.name for f in dataclasses.fields(Process)]
    assert columns.SELECT_LIST.split(", ") == [c.name for c in columns.PROCESS]


def test_a_row_decodes_into_its_process() -> None:
    process = Process(
        id="p",
        job="j",
        params={"a": [1, 2]},
        status=Status.FAILING,
        store={"n": 1},
        result=[1],
        error=ErrorInfo("E", "m", "tb", "error"),
        progress_done=1.0,
        progress_total=2.0,
        cancel_requested=True,
        stopped_status=Status.RUNNING,
        tags={"t": "x"},
        finished_at=None,
    )
    encode = {
        "json": codec.dumps,
        "status": lambda v: None if v is None else v.value,
        "error": codec.error_dumps,
        "bool": int,
    }
    row = tuple(
        encode.get(c.kind, lambda v: v)(getattr(process, c.name))  # type: ignore[operator]
        for c in columns.PROCESS
    )
    assert columns.row_decoder()((*row, "extra trailing column")) == process


def test_a_changes_values_follow_its_declared_columns() -> None:
    change = Change.of(Process(id="p", job="j", params={}, status=Status.RUNNING, store={"a": 1}))
    values = dict(zip((c.name for c in columns.CHANGE), columns.change_values(change), strict=True))
    assert values["status"] == "running" and values["store"] == '{"a":1}'
    assert values["result"] == "null" and values["stopped_status"] is None
