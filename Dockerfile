# The supervision service: migrations, then uvicorn workers. Configure with SUPERVISION_* variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SUPERVISION_DATABASE_URL=sqlite:////data/supervision.db \
    SUPERVISION_RULES_DIR=/app/rules \
    WORKERS=2

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY rules ./rules
# Editable: the code, alembic.ini and migrations/ stay together under /app.
RUN pip install -e . \
    && useradd --system --uid 10001 --home-dir /app supervision \
    && mkdir -p /data && chown supervision /data

USER supervision
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"
CMD ["sh", "-c", "supervision migrate && exec supervision serve --host 0.0.0.0 --port 8000 --workers \"$WORKERS\""]
