"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from app.auth.models import ApiKey
from app.db import Base
from app.events.models import Event
from app.rules.models import RuleGeneration
from app.units.models import Unit

__all__ = ["ApiKey", "Base", "Event", "RuleGeneration", "Unit"]
