# Shortcuts; each target is also a plain script under scripts/ for machines without make.
.PHONY: demo test test-pg lint bench smoke

demo:       ## start the service on SQLite with a month of demo data
	scripts/demo.sh

test:       ## the test suite on SQLite
	scripts/test.sh

test-pg:    ## the test suite on the local PostgreSQL
	SUPERVISION_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test scripts/test.sh

lint:
	. scripts/venv.sh && .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench:      ## ingest benchmark on both databases (figures go to bench/results/)
	. scripts/venv.sh && .venv/bin/python bench/ingest.py --database both

smoke:      ## the contract smoke test against a freshly started service
	. scripts/venv.sh && ../shared/contract-smoke/run.sh "$$PWD/.venv/bin/supervision"
