"""The shipped rule set (rules/*.yaml) against the demo month, with the reference engine.

Every planted risk story must raise its alert, and the normal population only a handful: an
inspector reads every alert (the real platform raised 52 in a year for a whole detachment).
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from app.demo.city import build_city
from app.demo.generate import Story, generate, planted_stories
from app.demo.stories import extra_stories
from app.events.domains import Domain
from app.rules.engine import Finding, evaluate
from app.rules.loader import load_rules
from app.rules.spec import RuleSet

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
ZONE = ZoneInfo("Asia/Shanghai")
SEED = 7

STORY_RULES = {
    "new-energy-bulk-registration": "vr-bulk-new-energy",
    "motorcycle-bulk-registration": "vr-bulk-motorcycle",
    "trailer-bulk-inspection": "vi-trailer-bulk-pass",
    "rushed-inspection": "vi-fast-pass",
    "agent-many-officers": "vr-agent-many-officers",
    "night-record-deletion": "vh-night-deletion",
    "no-liability-closures": "ah-no-liability-bulk",
    "fine-reduction": "vh-bulk-modification",
    "examiner-pass-rate": "dt-examiner-pass-rate",
}


@cache
def shipped() -> RuleSet:
    return load_rules(RULES_DIR)


@cache
def demo_findings() -> dict[str, list[Finding]]:
    city = build_city(SEED)
    events = [dict(item.body, id=index, source=item.source) for index, item in enumerate(generate(city, seed=SEED))]
    return {rule.id: evaluate(rule, events, ZONE) for rule in shipped()}


def test_the_shipped_set_covers_every_domain_with_bilingual_labels() -> None:
    rules = shipped()
    assert len(rules) >= 12
    assert {domain for rule in rules for domain in rule.domains} == set(Domain)
    for rule in rules:
        assert rule.label_zh.strip()
        assert rule.label_en.strip()
        assert any("\u4e00" <= ch <= "\u9fff" for ch in rule.label_zh), rule.id


@pytest.mark.parametrize("story", planted_stories(build_city(SEED), seed=SEED), ids=lambda story: story.key)
def test_every_planted_story_raises_its_alert(story: Story) -> None:
    rule_id = STORY_RULES[story.key]
    rule = shipped()[rule_id]
    assert rule.group_by.value == story.subject_type
    hits = [f for f in demo_findings()[rule_id] if f.subject_id == story.subject_id]
    assert hits, f"{rule_id} raised nothing for {story.subject_type} {story.subject_id}"
    last_moment = timedelta(microseconds=1)
    assert any(
        f.window_start.astimezone(ZONE).date() <= story.day <= (f.window_end - last_moment).astimezone(ZONE).date()
        for f in hits
    ), f"{rule_id} fired for {story.subject_id}, but not in a window holding {story.day}"


def test_the_normal_population_raises_only_a_handful() -> None:
    city = build_city(SEED)
    subjects = {story.subject_id for story in (*planted_stories(city, seed=SEED), *extra_stories(city, seed=SEED))}
    others = [
        (rule_id, finding.subject_id)
        for rule_id, findings in demo_findings().items()
        for finding in findings
        if finding.subject_id not in subjects
    ]
    assert len(others) <= 3, others
