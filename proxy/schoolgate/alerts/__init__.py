"""Instant safeguarding alerts: routing rules over recorded events (theme x severity x group ->
recipients and channel), deduplication and rate limits, a persistent outbox in the store, and
senders for e-mail and messaging webhooks. The routing file format is in alerts/README.md.

The gateway calls `SafeguardingAlerts.consider(event)` for each recorded event (it only decides
and queues); the deliverer task stores and sends in the background.
"""

from __future__ import annotations

from ..config.model import (
    EMAIL,
    Delivery,
    Destination,
    Limits,
    Routing,
    Rule,
    SmtpSettings,
    WebhookSettings,
)
from ..config.routing import ALERT_THEMES, RoutingError, load_routing
from ..events import ILLEGAL_THEME
from .engine import AlertEngine, SafeguardingAlerts, dedup_key
from .messages import Alert, AlertTemplates, TemplateError, context_command
from .outbox import OUTCOMES, Deliverer, Outbox, Round
from .rows import OutboxRow
from .senders import DeliveryError, Sender, SmtpSender, WebhookSender, senders_for, webhook_payload

__all__ = [
    "ALERT_THEMES",
    "Alert",
    "AlertEngine",
    "AlertTemplates",
    "Deliverer",
    "Delivery",
    "DeliveryError",
    "Destination",
    "EMAIL",
    "ILLEGAL_THEME",
    "Limits",
    "OUTCOMES",
    "Outbox",
    "OutboxRow",
    "Round",
    "Routing",
    "RoutingError",
    "Rule",
    "SafeguardingAlerts",
    "Sender",
    "SmtpSender",
    "SmtpSettings",
    "TemplateError",
    "WebhookSender",
    "WebhookSettings",
    "context_command",
    "dedup_key",
    "load_routing",
    "senders_for",
    "webhook_payload",
]
