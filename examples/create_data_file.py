"""The JobBoy example, as a corral process: write `total` fake people as JSON lines.

    corral --app examples/create_data_file.py execute create_data_file \
        -p filename=people.jsonl -p total=100000

`start` prepares a working directory and a temporary file; each `step` appends a
bounded number of Faker records in chunks and records in the store how far the
file is committed; `finish` moves the file into place; `rollback` deletes it.

Why the file never gets a line twice or loses one, even if a worker is killed
mid-step: the store (saved in the same transaction as the iteration, and only by
the lease holder) records the byte offset of the last committed step. A retried
step first truncates the file back to that offset, dropping whatever the killed
iteration wrote after it, then writes its records again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from faker import Faker
from pydantic import BaseModel, Field

from corral import App, Context

app = App()


class FileParams(BaseModel):
    filename: str = Field(description="Where the finished .jsonl file goes.")
    total: int = Field(1000, ge=0, description="How many people to write.")
    per_iteration: int = Field(5000, ge=1, description="Records written by one step.")
    chunk: int = Field(500, ge=1, description="Records written at once.")
    working_dir: str | None = Field(
        None, description="Where the temporary file lives; default: beside the target."
    )


def _working_dir(params: FileParams) -> Path:
    if params.working_dir:
        return Path(params.working_dir)
    return Path(params.filename).resolve().parent / ".create_data_file"


@app.process("create_data_file", params=FileParams)
class CreateDataFile:
    def __init__(self) -> None:
        self.fake = Faker()

    def start(self, ctx: Context[FileParams]) -> None:
        workdir = _working_dir(ctx.params)
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = workdir / f"{ctx.process_id}.jsonl.tmp"
        tmp.write_bytes(b"")
        ctx.store.update(tmp=str(tmp), written=0, offset=0)
        ctx.progress(0, ctx.params.total)

    def step(self, ctx: Context[FileParams]) -> bool:
        tmp = Path(ctx.store["tmp"])
        if not tmp.exists():  # resumed by `corral retry` after a rollback deleted it
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(b"")
            ctx.store.update(written=0, offset=0)
        written: int = ctx.store["written"]
        count = min(ctx.params.per_iteration, ctx.params.total - written)
        with tmp.open("r+b") as f:
            # Drop anything an interrupted iteration wrote after the last committed step.
            f.truncate(ctx.store["offset"])
            f.seek(ctx.store["offset"])
            for start in range(0, count, ctx.params.chunk):
                lines = [self.person() for _ in range(min(ctx.params.chunk, count - start))]
                f.write("".join(json.dumps(p) + "\n" for p in lines).encode())
                ctx.heartbeat()
            f.flush()
            os.fsync(f.fileno())
            offset = f.tell()
        written += count
        ctx.store.update(written=written, offset=offset)
        ctx.progress(written, ctx.params.total)
        return written >= ctx.params.total

    def finish(self, ctx: Context[FileParams]) -> dict[str, Any]:
        tmp, target = Path(ctx.store["tmp"]), Path(ctx.params.filename)
        if tmp.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(tmp, target)  # a rename on one filesystem
        # else: a previous try moved it and was killed before its commit.
        _remove_if_empty(tmp.parent)
        return {"filename": str(target), "lines": ctx.store["written"]}

    def rollback(self, ctx: Context[FileParams]) -> bool:
        tmp = ctx.store.get("tmp")
        if tmp:
            Path(tmp).unlink(missing_ok=True)
            _remove_if_empty(Path(tmp).parent)
        return True

    def person(self) -> dict[str, Any]:
        fake = self.fake
        return {
            "name": fake.name(),
            "email": fake.email(),
            "birthdate": fake.date_of_birth().isoformat(),
            "city": fake.city(),
            "job": fake.job(),
        }


def _remove_if_empty(directory: Path) -> None:
    # Not empty (another process's file) or already gone: leave it.
    with contextlib.suppress(OSError):
        directory.rmdir()
