"""Settings from the environment and database URLs as users write them (no database needed)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr, ValidationError

from app.config import Settings, normalize_database_url


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SUPERVISION_* variables must not leak into these tests."""
    for name in ("DATABASE_URL", "RULES_DIR", "TIMEZONE", "BOOTSTRAP_ADMIN_KEY", "LOG_LEVEL"):
        monkeypatch.delenv(f"SUPERVISION_{name}", raising=False)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgres://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql+psycopg://u:p%40ss@h/db?sslmode=require"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite+pysqlite:///x.db"),
        ("sqlite:////var/lib/supervision/x.db", "sqlite+pysqlite:////var/lib/supervision/x.db"),
        ("sqlite+pysqlite:///x.db", "sqlite+pysqlite:///x.db"),
        ("  sqlite:///x.db\n", "sqlite+pysqlite:///x.db"),
    ],
)
def test_database_urls_get_the_projects_driver(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "postgresql+asyncpg://u@h/db", "sqlite+aiosqlite:///x.db", "x.db", ""],
)
def test_other_databases_and_drivers_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:// or postgresql://"):
        normalize_database_url(url)


def test_settings_refuse_a_mysql_url() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(database_url="mysql://u@h/db")
    assert refused.value.errors()[0]["loc"] == ("database_url",)


def test_settings_normalise_the_database_url() -> None:
    assert Settings(database_url="postgres://u@h:5432/db").database_url == "postgresql+psycopg://u@h:5432/db"
    assert Settings(database_url="sqlite:///x.db").is_sqlite


def test_the_default_database_is_a_sqlite_file_under_var() -> None:
    settings = Settings()
    assert settings.is_sqlite
    assert "/var/" in settings.database_url


def test_the_default_time_zone_is_asia_shanghai() -> None:
    settings = Settings()
    assert settings.timezone == "Asia/Shanghai"
    assert settings.zone == ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "UTC+8", "", "../../etc/passwd"])
def test_an_unknown_time_zone_is_refused(zone: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(timezone=zone)
    assert refused.value.errors()[0]["loc"] == ("timezone",)


def test_a_known_time_zone_is_accepted() -> None:
    assert Settings(timezone="Europe/Berlin").zone == ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("key", ["", "short", "x" * 15])
def test_a_bootstrap_admin_key_shorter_than_16_characters_is_refused(key: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(bootstrap_admin_key=SecretStr(key))
    assert refused.value.errors()[0]["loc"] == ("bootstrap_admin_key",)
    assert not key or key not in str(refused.value)


def test_a_bootstrap_admin_key_of_16_characters_is_accepted_and_kept_secret() -> None:
    settings = Settings(bootstrap_admin_key=SecretStr("k" * 16))
    assert settings.bootstrap_admin_key is not None
    assert settings.bootstrap_admin_key.get_secret_value() == "k" * 16
    assert "k" * 16 not in repr(settings)
    assert "k" * 16 not in str(settings)


def test_settings_are_read_from_supervision_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERVISION_DATABASE_URL", "postgres://ops@db.internal:5432/supervision")
    monkeypatch.setenv("SUPERVISION_TIMEZONE", "Asia/Urumqi")
    monkeypatch.setenv("SUPERVISION_RULES_DIR", "/etc/supervision/rules")
    monkeypatch.setenv("SUPERVISION_BOOTSTRAP_ADMIN_KEY", "b" * 32)
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://ops@db.internal:5432/supervision"
    assert settings.timezone == "Asia/Urumqi"
    assert str(settings.rules_dir) == "/etc/supervision/rules"
    assert settings.bootstrap_admin_key is not None
    assert settings.bootstrap_admin_key.get_secret_value() == "b" * 32


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("DATABASE_URL", "mysql://u@h/db")
    settings = Settings()
    assert settings.timezone == "Asia/Shanghai"
    assert settings.is_sqlite


def test_a_bad_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERVISION_TIMEZONE", "Nowhere/Special")
    with pytest.raises(ValidationError):
        Settings()


def test_a_short_bootstrap_key_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERVISION_BOOTSTRAP_ADMIN_KEY", "admin")
    with pytest.raises(ValidationError):
        Settings()
