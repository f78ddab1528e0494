"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from app.alerts.models import Alert
from app.audit.models import AuditEntry
from app.auth.models import ApiKey
from app.breakers.models import Breaker, BreakerChange
from app.console.models import EndedSession
from app.db import Base
from app.events.models import Event
from app.exemptions.models import Exemption
from app.rules.models import RuleBuild, RuleGeneration, RuleWindow, RuleWindowValue
from app.scans.models import Lease, Scan
from app.units.models import Unit
from app.webhooks.models import Webhook, WebhookDelivery

__all__ = [
    "Alert",
    "ApiKey",
    "AuditEntry",
    "Base",
    "Breaker",
    "BreakerChange",
    "EndedSession",
    "Event",
    "Exemption",
    "Lease",
    "RuleBuild",
    "RuleGeneration",
    "RuleWindow",
    "RuleWindowValue",
    "Scan",
    "Unit",
    "Webhook",
    "WebhookDelivery",
]
