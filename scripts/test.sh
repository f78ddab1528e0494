#!/usr/bin/env bash
# Runs the test suite: on SQLite, or on PostgreSQL when SUPERVISION_TEST_DATABASE_URL is set
# (e.g. postgresql://postgres@127.0.0.1:5432/test — a fresh database is created beside it and dropped).
# Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/venv.sh"
cd "$root"
echo "== tests on ${SUPERVISION_TEST_DATABASE_URL:-SQLite}"
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
