"""Settings read from the environment (prefix ``SUPERVISION_``)."""

from __future__ import annotations

import re
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse_many
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.rules.spec import Duration

DEFAULT_DATABASE_URL = "sqlite:///./var/supervision.db"
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")


def normalize_database_url(url: str) -> str:
    """Accept URLs as users write them and pick the project's driver for each database."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+pysqlite://" + url[len("sqlite://") :]
    if url.startswith(("postgresql+psycopg://", "sqlite+pysqlite://")):
        return url
    raise ValueError("database URL must start with sqlite:// or postgresql://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUPERVISION_", extra="ignore")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, description="sqlite:///path or postgresql://…")
    rules_dir: Path = Field(default=Path("rules"), description="folder of YAML rule files")
    timezone: str = Field(default="Asia/Shanghai", description="zone for time-of-day rules and windows")
    bootstrap_admin_key: SecretStr | None = Field(default=None, description="an admin key that exists after start")
    log_level: str = Field(default="INFO")
    access_log: bool = Field(default=True, description="one log line per request")
    # Connections kept open per worker, and more opened at a peak and closed after use. Sixteen clients on
    # one worker need sixteen at once: with fewer kept, every request past them paid for a new connection.
    db_pool_size: int = Field(default=20, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    rate_limit_enabled: bool = Field(default=True, description="false turns every rate limit off (benchmarks)")
    rate_limit_events: str = Field(
        default="20000/second;600000/minute", description="events per API key on ingestion (a batch counts its events)"
    )
    rate_limit_requests: str = Field(default="300/second", description="ingestion requests per API key")
    rate_limit_auth_failures: str = Field(default="30/minute", description="unknown or revoked keys per client address")
    rate_limit_prefix: str = Field(default="supervision", description="prefix of the rate-limit keys in Redis")
    rate_limit_file: Path | None = Field(default=None, description="set by `serve` for its workers: shared counters")
    redis_url: SecretStr | None = Field(default=None, description="redis://host:port/db: limits shared across hosts")
    scan_interval: Duration | None = Field(
        default=None, description="run a scan this often (e.g. 15m), once per period whatever the workers"
    )
    webhook_hosts: str | None = Field(
        default=None, description="comma-separated host names or CIDRs webhooks may point to (unset: anywhere)"
    )
    webhook_delivery: bool = Field(default=True, description="false: this process writes deliveries but sends none")
    webhook_poll_interval: float = Field(default=1.0, gt=0, le=60, description="seconds between looks for due work")
    webhook_backoff_base: float = Field(default=5.0, gt=0, description="seconds: the first retry comes within this")
    webhook_backoff_cap: float = Field(default=600.0, gt=0, description="seconds: the longest wait between tries")
    webhook_retry_for: float = Field(default=86_400.0, gt=0, description="seconds of retrying before `failed`")
    webhook_timeout: float = Field(default=10.0, gt=0, le=60, description="seconds a receiver has to answer 2xx")
    webhook_cache_ttl: float = Field(
        default=5.0, ge=0, description="seconds a worker may use its list of webhooks before reading it again"
    )

    @field_validator("database_url")
    @classmethod
    def _driver(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("bootstrap_admin_key")
    @classmethod
    def _strong_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the bootstrap admin key must be at least 16 characters long")
        return value

    @field_validator("rate_limit_events", "rate_limit_requests", "rate_limit_auth_failures")
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate limit such as `100/second;1000/minute`") from exc
        return value

    @field_validator("webhook_hosts")
    @classmethod
    def _webhook_hosts(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for entry in (e.strip().lower() for e in value.split(",")):
            if not entry:
                continue
            try:
                ip_network(entry, strict=False)
            except ValueError:
                if not _HOST_NAME.fullmatch(entry):
                    raise ValueError(f"{entry!r} is neither a host name nor a CIDR") from None
        return value

    @property
    def webhook_allowed(self) -> tuple[frozenset[str], tuple[IPv4Network | IPv6Network, ...]] | None:
        """(host names, networks) webhooks may point to; None: anywhere."""
        if self.webhook_hosts is None:
            return None
        names: set[str] = set()
        networks: list[IPv4Network | IPv6Network] = []
        for entry in (e.strip().lower() for e in self.webhook_hosts.split(",")):
            if not entry:
                continue
            try:
                networks.append(ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.rstrip("."))
        return frozenset(names), tuple(networks)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
