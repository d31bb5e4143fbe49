"""docs/django.md, for real: Django on psycopg 3 and corral on one PostgreSQL schema; the
doc's `sign_up` submits inside Django's transaction (a commit keeps both the row and the
process, a rollback neither), and the doc's worker command runs what was committed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.backends import backend_url
from tests.e2e.conftest import Corral
from tests.e2e.test_docs_blocks import commands, write_files

pytest.importorskip("django", reason="the dev extra installs Django")

#: Django set up from the doc's settings.py, then the doc's sign_up: once committed, once
#: inside an outer transaction that rolls back.
RUNNER = """
import json, os
import django
from django.db import connection, transaction

django.setup()
import signup

connection.ensure_connection()
assert type(connection.connection).__module__.startswith("psycopg"), type(connection.connection)
kept = signup.sign_up("ann@example.com")


class Undo(Exception):
    pass


undone = None
try:
    with transaction.atomic():
        undone = signup.sign_up("bob@example.com")
        raise Undo
except Undo:
    pass
print(json.dumps({"kept": kept, "undone": undone}))
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with backend_url("postgres", tmp_path) as url:
        write_files("django.md", tmp_path)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE newsletter_signup (email text PRIMARY KEY)")
        yield tmp_path, url


def test_submit_inside_djangos_transaction(project: tuple[Path, str]) -> None:
    path, url = project
    corral = Corral(path, app=None)
    corral.url = url
    try:
        run = commands("django.md")
        corral.ok(*run["migrate"].split()[1:])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "PYTEST_"))}
        env.update(CORRAL_DATABASE_URL=url, DJANGO_SETTINGS_MODULE="settings", PYTHONPATH=".")
        r = subprocess.run(
            [sys.executable, "-c", RUNNER],
            cwd=path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        ids = json.loads(r.stdout)
        assert ids["undone"] is not None, "the rolled-back sign_up did not submit"

        with psycopg.connect(url, autocommit=True) as conn:
            emails = [row[0] for row in conn.execute("SELECT email FROM newsletter_signup")]
            processes = [row[0] for row in conn.execute("SELECT id::text FROM corral_process")]
        assert emails == ["ann@example.com"]
        assert processes == [ids["kept"]], "a rolled-back submit left its process"

        worker = corral.start(*run["worker"].split()[1:])
        done = corral.wait_status(ids["kept"], "completed", timeout=60)
        assert done["result"] == "welcome sent to ann@example.com"
        assert corral.stop(worker) == 0
    finally:
        corral.cleanup()
