"""`supervision rules check [DIR]` as an operator runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.factories import CONTRACT_RULE_YAML

ROOT = Path(__file__).resolve().parents[2]

GOOD = CONTRACT_RULE_YAML


def check(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "rules", "check", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_a_folder_of_valid_rules_passes(tmp_path: Path) -> None:
    (tmp_path / "vr.yaml").write_text(GOOD, encoding="utf-8")
    done = check(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 rules in 1 files" in done.stdout


def test_a_bad_rule_fails_naming_the_file_the_rule_and_the_field(tmp_path: Path) -> None:
    (tmp_path / "vr.yaml").write_text(GOOD.replace("trip_at: 40", "trip_at: 10"), encoding="utf-8")
    done = check(tmp_path)
    assert done.returncode == 1
    assert "vr.yaml" in done.stderr
    assert "vr-bulk-register" in done.stderr
    assert "trip_at" in done.stderr


def test_the_shipped_rules_folder_is_valid() -> None:
    done = check(ROOT / "rules")
    assert done.returncode == 0, done.stderr
