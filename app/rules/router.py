"""Rule endpoints (预警规则): read the rules in force, check a rule document, backtest a rule. Read-only."""

from __future__ import annotations

from typing import Annotated

import yaml
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from app.auth.deps import AdminKey, InspectorKey
from app.config import Settings
from app.deps import DatabaseDep, ReadSession, WriteSession
from app.errors import AppError, InvalidInput, NotFound, responses
from app.events.domains import Domain
from app.exemptions import service as exemptions
from app.params import PathId
from app.rules import service
from app.rules.engine import Finding
from app.rules.schemas import BacktestIn, BacktestItem, BacktestOut, ReloadOut, RuleList, ValidateOut
from app.rules.spec import AnyRule, Rule, RuleSet
from app.rules.state import RulesInForce
from app.units.service import subtree

router = APIRouter(prefix="/v1/rules", tags=["rules"])

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


class UnsupportedMediaType(AppError):
    status = 415


def get_rules(request: Request, db: DatabaseDep) -> RuleSet:
    """The rules in force in this worker, caught up with reloads made through any worker."""
    in_force: RulesInForce = request.app.state.rules
    return in_force.current(db)


Rules = Annotated[RuleSet, Depends(get_rules)]


def _rule(rules: RuleSet, rule_id: str) -> AnyRule:
    rule = rules.get(rule_id)
    if rule is None:
        raise NotFound(f"no rule with id {rule_id!r}")
    return rule


# The spec models serialise to JSON text (`window: "1h"`) that they do not read back in Python mode, so the
# routes answer with the JSON dump themselves; `response_model` documents the shape.


@router.get("", response_model=RuleList, responses=responses(401, 403, 422))
def list_rules(_principal: InspectorKey, rules: Rules, domain: Domain | None = None) -> Response:
    """The rules in force, sorted by id, optionally only those of one domain."""
    return JSONResponse({"items": service.listed(rules, domain.value if domain else None), "next_cursor": None})


@router.post(
    "/validate",
    responses={
        200: {"model": ValidateOut, "description": "the document would load"},
        **responses(401, 403, 413, 415, 422, s415="the body is not YAML text (send Content-Type: application/yaml)"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "a rule document: a YAML list of rules, as in a rule file",
            "content": {
                # As YAML the document is a list of rules (objects); as plain text, the same written out.
                "application/yaml": {"schema": {"type": "array", "items": {"type": "object"}}},
                "text/plain": {"schema": {"type": "string", "minLength": 1}},
            },
        }
    },
)
async def validate_rules(request: Request, _admin: AdminKey) -> ValidateOut:
    """Check a YAML rule document without loading it (no side effects)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in YAML_TYPES:
        raise UnsupportedMediaType(f"send the rules as YAML text (Content-Type: application/yaml), not {media!r}")
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput([(("body",), "must be UTF-8 text")]) from None
    try:
        if _is_empty_document(text):
            # A rule file may be empty; a document sent to be checked must hold rules to check.
            raise InvalidInput([(("body",), "must hold a list of rules (each starting with '- id: ...'), not nothing")])
        return ValidateOut(valid=True, rules=service.validate_text(text))
    except RecursionError:
        # YAML nested thousands of levels deep exhausts the parser's stack; no rule document does that.
        raise InvalidInput([(("body",), "the document is nested too deeply")]) from None


def _is_empty_document(text: str) -> bool:
    try:
        return yaml.safe_load(text) is None
    except yaml.YAMLError:
        return False  # validate_text names the syntax error


@router.post("/reload", responses=responses(401, 403, 422))
def reload_rules(admin: AdminKey, request: Request, session: WriteSession) -> ReloadOut:
    """Load the rule files again; on any problem the rules in force stay (422 naming file, rule, field)."""
    in_force: RulesInForce = request.app.state.rules
    generation = in_force.reload(session, actor=admin.name)
    return ReloadOut(generation=generation.id, rules=generation.rules, digest=generation.digest)


@router.get("/{rule_id}", response_model=Rule, responses=responses(401, 403, 404, 422))
def get_rule(rule_id: PathId, _principal: InspectorKey, rules: Rules) -> Response:
    """One rule in force."""
    return JSONResponse(service.rule_json(_rule(rules, rule_id)))


@router.post("/{rule_id}/backtest", responses=responses(400, 401, 403, 404, 413, 422))
def backtest_rule(
    rule_id: PathId, body: BacktestIn, principal: InspectorKey, rules: Rules, session: ReadSession, request: Request
) -> BacktestOut:
    """The alerts a rule would have raised over stored events in a range (written nowhere)."""
    rule = _rule(rules, rule_id)
    settings: Settings = request.app.state.settings
    findings = service.backtest(
        session,
        rule=rule,
        time_from=body.time_from,
        time_to=body.to,
        zone=settings.zone,
        units=subtree(principal.unit_id) if principal.unit_id else None,
    )
    covers = exemptions.covers_of(session, {finding.subject_id for finding in findings})
    return BacktestOut(
        items=[
            _item(
                finding, exemptions.covering(covers, rule, finding.subject_id, finding.window_start, finding.window_end)
            )
            for finding in findings
        ]
    )


def _item(finding: Finding, exemption_id: int | None) -> BacktestItem:
    return BacktestItem(
        subject_type=finding.subject_type,
        subject_id=finding.subject_id,
        window_start=finding.window_start,
        window_end=finding.window_end,
        value=finding.value,
        tripped=finding.tripped,
        hits=finding.hits,
        event_ids=[int(event_id) for event_id in finding.event_ids],
        exemption_id=exemption_id,
    )
