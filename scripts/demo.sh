#!/usr/bin/env bash
# Starts the service on SQLite (./var/supervision.db) with a month of demo data loaded.
# First run: creates .venv, migrates, posts ~100,000 demo events (about a minute), then serves.
# Later runs find the month already stored and start at once. PORT (default 8000) picks the port.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/venv.sh"
cd "$root"
export SUPERVISION_BOOTSTRAP_ADMIN_KEY=${SUPERVISION_BOOTSTRAP_ADMIN_KEY:-demo-admin-key-change-me}
.venv/bin/supervision migrate
.venv/bin/supervision demo --seed "${SEED:-7}"
echo
echo "admin key (demo only): $SUPERVISION_BOOTSTRAP_ADMIN_KEY"
echo "serving on http://127.0.0.1:${PORT:-8000}  (API docs: /docs)"
exec .venv/bin/supervision serve --host 127.0.0.1 --port "${PORT:-8000}"
