"""Schema fuzzing: Schemathesis runs every check it has against a real server's own OpenAPI document, with
an admin, an inspector and a source key, over a database that holds the demo month's events, alerts and
breakers. The settings, and the one check left out with the reason, are in `schemathesis.toml`.

Zero failures is the bar: a 500, an undeclared status, header or content type, a response off its schema,
a request off the schema that is accepted, a 405 without the right `Allow` — each fails the test with
Schemathesis' own report (and a curl line to reproduce it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.auth.service import Role, create_key
from app.config import Settings
from app.db import Database
from app.migrate import upgrade_head
from tests.conftest import ROOT, start_server, stop_server

pytestmark = pytest.mark.e2e

SEED = 20261129  # the same requests every run; change it to explore further


def test_schemathesis_finds_nothing_with_every_role(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    upgrade_head(Settings(database_url=url).database_url)
    env = {**os.environ, "SUPERVISION_DATABASE_URL": url}
    # The demo month, thinned: every planted story (alerts, open breakers) on a small normal population.
    subprocess.run(
        [sys.executable, "-m", "app", "demo", "--days", "30", "--scale", "0.01"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    db = Database(Settings(database_url=url, bootstrap_admin_key=None))
    try:
        with db.session(write=True) as session:
            keys = {role: create_key(session, name=f"fuzz-{role.value}", role=role).secret for role in Role}
    finally:
        db.dispose()

    server = start_server(url, tmp_path / "server.log", env={"SUPERVISION_ACCESS_LOG": "false"})
    reports: dict[Role, str] = {}
    failed: list[Role] = []
    try:
        for role in (Role.ADMIN, Role.INSPECTOR, Role.SOURCE):
            run = subprocess.run(
                [str(Path(sys.executable).parent / "st"), "--config-file", str(ROOT / "schemathesis.toml")]
                + ["--no-color", "run", f"{server.base_url}/openapi.json", "--seed", str(SEED)]
                + ["--report", "junit", "--report-dir", str(tmp_path / f"report-{role.value}")],
                cwd=tmp_path,
                env={**env, "SUPERVISION_FUZZ_KEY": keys[role]},
                capture_output=True,
                text=True,
                timeout=600,
            )
            reports[role] = run.stdout + run.stderr
            if run.returncode != 0:
                failed.append(role)
    finally:
        stop_server(server)
    for role, report in reports.items():
        figures = re.search(r"\d+ generated.*", report)
        print(f"schemathesis as {role.value}: {figures.group(0) if figures else 'no figures'}")  # noqa: T201
    assert not failed, "\n\n".join(f"=== as {role.value} ===\n{reports[role]}" for role in failed)
