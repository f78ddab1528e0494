"""The event body in the OpenAPI document: a union discriminated on `domain`.

Each domain's variant lists the actions it allows and the attributes it knows (with the actions that
require them), from the same table (`SPECS`) that validates events. Only the document changes: the
body is still validated by `EventIn` and `service.validate`, so no error location or message moves.
"""

from __future__ import annotations

import copy
from typing import Any

from app.events.domains import DOMAIN_LABELS, SPECS, Domain, DomainSpec

COMPONENT = "EventIn"


def variant_name(domain: Domain) -> str:
    return COMPONENT + "".join(part.title() for part in domain.value.split("_"))


def discriminate_by_domain(schemas: dict[str, Any]) -> None:
    """Rewrite the `EventIn` component as a `oneOf` of one variant per domain."""
    base = schemas.get(COMPONENT)
    if base is None or "properties" not in base:
        return
    mapping = {}
    for domain, spec in SPECS.items():
        name = variant_name(domain)
        schemas[name] = _variant(base, domain, spec, name)
        mapping[domain.value] = f"#/components/schemas/{name}"
    schemas[COMPONENT] = {
        "title": COMPONENT,
        "description": "A business event (业务事件); its `domain` decides the actions and the attributes it takes.",
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "domain", "mapping": mapping},
    }


def _variant(base: dict[str, Any], domain: Domain, spec: DomainSpec, name: str) -> dict[str, Any]:
    variant = copy.deepcopy(base)
    label_zh, label_en = DOMAIN_LABELS[domain]
    variant["title"] = name
    variant["description"] = f"{label_en} ({label_zh})"
    properties = variant["properties"]
    properties["domain"] = {"type": "string", "const": domain.value, "title": "Domain"}
    properties["action"] = {"type": "string", "enum": list(spec.actions), "title": "Action"}
    attributes = properties["attributes"]
    attributes["properties"] = {attr: rule.check.json_schema() for attr, rule in spec.attributes.items()}
    always = sorted(attr for attr, rule in spec.attributes.items() if rule.required_for >= set(spec.actions))
    if always:
        attributes["required"] = always
        variant["required"] = [*variant.get("required", []), "attributes"]
    conditions = []
    for action in spec.actions:
        needed = sorted(
            attr for attr, rule in spec.attributes.items() if action in rule.required_for and attr not in always
        )
        if needed:
            conditions.append(
                {
                    "if": {"properties": {"action": {"const": action}}, "required": ["action"]},
                    "then": {"required": ["attributes"], "properties": {"attributes": {"required": needed}}},
                }
            )
    if conditions:
        variant["allOf"] = conditions
    return variant
