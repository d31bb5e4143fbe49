"""After a clean close, the SQLite file alone holds all the data: copying it is a backup."""

from __future__ import annotations

import shutil
from pathlib import Path

from corral.storage import open_storage
from corral.storage.base import ProcessFilter
from tests.conformance.common import new


def test_after_close_the_database_file_alone_holds_everything(tmp_path: Path) -> None:
    db = tmp_path / "corral.db"
    with open_storage(f"sqlite:///{db}") as storage:
        storage.process_insert_many([new() for _ in range(50)])
    # The WAL was checkpointed into the file and emptied (or removed).
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    copy = tmp_path / "copy" / "corral.db"
    copy.parent.mkdir()
    shutil.copyfile(db, copy)  # the main file only
    with open_storage(f"sqlite:///{copy}") as restored:
        assert restored.process_count(ProcessFilter()) == 50
