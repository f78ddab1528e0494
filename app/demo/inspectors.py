"""The demo's inspectors: what the detachment's discipline inspectors do with the month's alerts.

A newcomer's first demo should show a console with something on every page, so simulated inspectors act
on the planted stories through the same service functions the API's routes call (workflow transitions,
breaker resets, exemption filing and decision), at times inside the demo month: the loader runs each act
between the events that come before and after it, so a breaker reset on a Monday afternoon is followed by
the events of that afternoon, and the fleet's filing is approved before its vehicles are registered.

The plan follows the seed's shape (../shared/DOMAIN.md): most alerts stay warnings; three are escalated to
supervision (one of them left to go overdue); interviews at each of the three levels (三级约谈) outnumber the
people held accountable (police, auxiliaries and staff); one business unit is suspended (停业整改); one
alert is dismissed as a false positive; a breaker is reset and re-trips on probation; and a fleet's bulk
registration is filed (报备) by the registration system and approved by an inspector (four eyes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.alerts import service as alerts
from app.alerts.models import Alert
from app.alerts.schemas import TransitionIn
from app.breakers import service as breakers
from app.breakers.models import Breaker
from app.demo.city import EXAM_CENTRE, INSPECTION_SECTION, City, brigade_of
from app.demo.stories import (
    DEMO_START,
    TZ,
    Story,
    extra_stories,
    fleet_company,
    planted_stories,
    story_operator,
    story_times,
)
from app.exemptions import service as exemptions
from app.rules.spec import RuleSet

# Who acts: two inspectors of the detachment's discipline office, and the registration system that files.
INSPECTOR = "inspector-zhang"
SECOND_INSPECTOR = "inspector-li"
FILER = "vr-system"

# The rule whose alert each story's moves are about.
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
    "fleet-registration": "vr-bulk-new-energy",
    "staff-record-corrections": "vh-bulk-modification",
}


@dataclass(frozen=True)
class Act:
    at: datetime
    what: str  # what happened, for the summary: "interview:unit", "reset", "exemption:approved", …
    run: Callable[[Session], bool]  # False when there was nothing to act on (a shorter demo window)


@dataclass
class Done:
    """What the inspectors did, in order: (local time, what, story key)."""

    acts: list[tuple[datetime, str]] = field(default_factory=list)

    def count(self, what: str) -> int:
        return sum(1 for _, done in self.acts if done == what)


def _at(day: date, days_after: int, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day + timedelta(days=days_after), time(hour, minute), TZ)


def _alert(session: Session, rule_id: str, subject_id: str) -> Alert | None:
    """The story's alert: the highest value of its rule on its subject (the story's own window)."""
    query = (
        select(Alert)
        .where(Alert.rule_id == rule_id, Alert.subject_id == subject_id)
        .order_by(Alert.value.desc(), Alert.id)
        .limit(1)
    )
    return session.scalars(query).first()


def plan(city: City, rules: RuleSet, *, seed: int, days: int = 30) -> list[Act]:
    """Every act of the month, in time order; deterministic for a seed. A move whose alert is not there (a
    demo window shorter than the month) is skipped when its time comes; the fleet files only inside the window."""
    stories = {story.key: story for story in (*planted_stories(city, seed=seed), *extra_stories(city, seed=seed))}
    acts: list[Act] = []

    def move(key: str, at: datetime, to: str, reason: str, **fields: Any) -> None:
        story = stories[key]
        rule_id = STORY_RULES[key]
        body = TransitionIn.model_validate({"to": to, "reason": reason, **fields})

        def run(session: Session) -> bool:
            alert = _alert(session, rule_id, story.subject_id)
            if alert is None or alert.stage in ("closed", "dismissed"):
                return False
            alerts.transition(session, alert.id, body, actor=INSPECTOR, if_match=None, now=at)
            return True

        what = (
            f"{to}:{fields['level']}"
            if to == "interview"
            else f"{to}:{fields['outcome']}"
            if "outcome" in fields
            else to
        )
        acts.append(Act(at, what, run))

    def person(key: str) -> str:
        return stories[key].subject_id

    def brigade(key: str) -> str:
        return brigade_of(city.operator(person(key)).unit) or city.operator(person(key)).unit

    def interview(key: str, at: datetime, level: str, summary: str, *others: str) -> None:
        # A person's alert interviews that person (and whoever else is named); a station's, the clerk named.
        who = [] if stories[key].subject_type == "business_unit" else [person(key)]
        move(
            key,
            at,
            "interview",
            "警示约谈",
            interviewees=[*who, *others],
            level=level,
            held_at=at.isoformat(),
            summary=summary,
        )

    day = {key: story.day for key, story in stories.items()}

    # 1. New-energy registrations in bulk by a police officer: escalated, interviewed by the unit, a demerit.
    key = "new-energy-bulk-registration"
    move(
        key,
        _at(day[key], 1, 10),
        "supervision",
        "提级督办：核查批量上户车辆来源",
        assignee_unit=brigade(key),
        due_at=_at(day[key], 8, 18).isoformat(),
    )
    interview(key, _at(day[key], 6, 15), "unit", "大队约谈：说明单小时批量办理新能源车上户的经过")
    move(key, _at(day[key], 9, 10), "accountability", "违规批量办理上户，记过", outcome="demerit")

    # 2. Motorcycles in bulk by an auxiliary: the discipline office interviews them and their officer; dismissed.
    key = "motorcycle-bulk-registration"
    officer = city.operator(person(key)).responsible_officer
    summary = "纪检约谈：辅警批量办理摩托车上户，连带责任民警到场"
    interview(key, _at(day[key], 2, 15), "discipline", summary, *([officer] if officer else []))
    move(key, _at(day[key], 7, 10), "accountability", "辅警违规办理业务，予以辞退", outcome="dismissal")

    # 3. Trailers passed in bulk at one station: escalated to the vehicle administration, suspended 90 days.
    key = "trailer-bulk-inspection"
    move(
        key,
        _at(day[key], 1, 9, 30),
        "supervision",
        "提级督办：检测站批量通过平板挂车检测",
        assignee_unit=INSPECTION_SECTION,
        due_at=_at(day[key], 6, 18).isoformat(),
    )
    move(
        key,
        _at(day[key], 5, 10),
        "accountability",
        "检测站违规检测，停业整改",
        outcome="suspension",
        suspension_days=90,
    )

    # 4. Two-minute inspections: the breaker is reset mid-afternoon (the station says its lane was fixed),
    #    the next rushed pass re-trips it on probation; the party committee interviews the station's clerk.
    key = "rushed-inspection"
    rule = rules.get(STORY_RULES[key])
    times = story_times(city, key, seed=seed)
    if rule is not None and rule.trip_at is not None and len(times) > int(rule.trip_at) + 1:
        after = int(rule.trip_at)  # the (trip_at + 1)-th event counts while the breaker is open
        reset_at = times[after] + (times[after + 1] - times[after]) / 2
        station = stories[key].subject_id

        def reset(session: Session) -> bool:
            breaker = session.scalars(
                select(Breaker).where(
                    Breaker.kind == "rule",
                    Breaker.rule_id == STORY_RULES["rushed-inspection"],
                    Breaker.subject_id == station,
                    Breaker.state == "open",
                )
            ).first()
            if breaker is None:
                return False
            breakers.reset(
                session,
                breaker.id,
                rules=rules,
                actor=INSPECTOR,
                reason="检测站称检测线已检修，恢复业务观察",
                now=reset_at,
                may_lift_suspension=False,
            )
            return True

        acts.append(Act(reset_at, "reset", reset))
    clerk = story_operator(city, key, seed=seed).id
    interview(key, _at(day[key], 3, 15), "committee", "党委约谈：检测站两分钟内完成检测", clerk)
    move(key, _at(day[key], 10, 10), "closed", "整改到位，办结")

    # 5. The intermediary: escalated to its brigade, and left past its due date (overdue).
    key = "agent-many-officers"
    move(
        key,
        _at(day[key], 1, 11),
        "supervision",
        "提级督办：中介经多名经办人集中办理业务",
        assignee_unit="CD-DD1",
        due_at=_at(day[key], 8, 18).isoformat(),
    )

    # 6. Records deleted at night: the party committee interviews the officer; transferred to discipline.
    key = "night-record-deletion"
    interview(key, _at(day[key], 1, 9), "committee", "党委约谈：深夜批量删除违法记录")
    move(key, _at(day[key], 6, 10), "accountability", "移交纪检监察部门调查", outcome="transferred_to_discipline")

    # 7. No-liability closures under one officer: interviewed by the unit with the auxiliaries; closed.
    key = "no-liability-closures"
    aux = [op.id for op in city.auxiliaries_of(person(key))][:2]
    interview(key, _at(day[key], 7, 15), "unit", "中队约谈：辅警批量无责结案，连带责任民警说明情况", *aux)
    move(key, _at(day[key], 9, 16), "closed", "复核案卷，责令整改，办结")

    # 8. Fines reduced in bulk by an auxiliary: interviewed by the unit; a warning.
    key = "fine-reduction"
    interview(key, _at(day[key], 1, 15), "unit", "大队约谈：单日批量减免罚款")
    move(key, _at(day[key], 4, 10), "accountability", "违规减免罚款，警告", outcome="warning")

    # 9. The examiner's pass rate: the discipline office interviews them; closed after review of the videos.
    key = "examiner-pass-rate"
    interview(key, _at(day[key], 2, 10), "discipline", "纪检约谈：考试员单日通过率异常")
    move(key, _at(day[key], 9, 10), "closed", "调阅考试视频，未见违规，提醒谈话后办结")

    # 10. A staff clerk's bulk corrections: interviewed by the unit; criticism.
    key = "staff-record-corrections"
    interview(key, _at(day[key], 1, 14), "unit", "中队约谈：其他工作人员单日批量修改违法记录")
    move(key, _at(day[key], 3, 10), "accountability", "未按规定报批修改记录，批评教育", outcome="criticism")

    # 11. The fleet's bulk registration: filed the afternoon before by the registration system, approved by an
    #     inspector who did not file it (four eyes); its alert is then recorded exempted and trips nothing.
    key = "fleet-registration"
    fleet = stories[key]
    company = fleet_company(city, seed=seed)
    filed: dict[str, int] = {}

    def file(session: Session) -> bool:
        exemption = exemptions.request(
            session,
            rules,
            rule_id=STORY_RULES[key],
            domains=None,
            subject_type="operator",
            subject_id=fleet.subject_id,
            starts_at=_at(fleet.day, 0, 8),
            ends_at=_at(fleet.day, 0, 12),
            reason=f"{company.label_zh}集中办理新能源汽车注册登记 {company.label_en}: fleet registration",
            reference=f"FLEET-{fleet.day:%Y%m%d}",
            actor=FILER,
            now=_at(fleet.day, -1, 16),
        )
        filed["id"] = exemption.id
        return True

    def approve(session: Session) -> bool:
        if "id" not in filed:
            return False
        exemption = exemptions.get(session, filed["id"], scope=exemptions.Scope(), lock=True)
        exemptions.decide(
            session,
            rules,
            exemption,
            approve=True,
            reason="已核对车队订单与购车发票",
            actor=SECOND_INSPECTOR,
            now=_at(fleet.day, -1, 17, 30),
        )
        return True

    if rules.get(STORY_RULES[key]) is not None and fleet.day < DEMO_START + timedelta(days=days):
        acts.append(Act(_at(fleet.day, -1, 16), "exemption:requested", file))
        acts.append(Act(_at(fleet.day, -1, 17, 30), "exemption:approved", approve))

    # 12. A request left for the newcomer to decide: on the window's last afternoon the registration system files
    #     the exam centre's driving-test day a week later (a driving school's whole cohort sits its exams).
    last = DEMO_START + timedelta(days=days - 1)
    exam_day = last + timedelta(days=7)

    def file_exam_day(session: Session) -> bool:
        exemptions.request(
            session,
            rules,
            rule_id=None,
            domains=["driver_testing"],
            subject_type="org_unit",
            subject_id=EXAM_CENTRE,
            starts_at=_at(exam_day, 0, 8),
            ends_at=_at(exam_day, 0, 18),
            reason="驾校学员集中考试日 a driving school's cohort sits its driving tests",
            reference=f"EXAM-{exam_day:%Y%m%d}",
            actor=FILER,
            now=_at(last, 0, 15),
        )
        return True

    if days >= 7:
        acts.append(Act(_at(last, 0, 15), "exemption:requested", file_exam_day))

    # 13. One false positive dismissed: the examiner's volume spike (they covered a colleague's whole day of
    #     exams; the pass rate is what the interview is about), or else the first alert no story explains.
    subjects = {story.subject_id for story in stories.values()}
    examiner = stories["examiner-pass-rate"]
    dismiss_at = _at(examiner.day, 3, 10)

    def dismiss(session: Session) -> bool:
        alert = _alert(session, "dt-examiner-volume-spike", examiner.subject_id)
        if alert is None or alert.stage != "warning":
            query = (
                select(Alert)
                .where(Alert.subject_id.not_in(sorted(subjects)), Alert.stage == "warning", Alert.exempted.is_(False))
                .order_by(Alert.window_start, Alert.id)
                .limit(1)
            )
            alert = session.scalars(query).first()
        if alert is None:
            return False
        body = TransitionIn.model_validate(
            {"to": "dismissed", "reason": "考试员当日顶班，考试量激增属正常排班，误报排除"}
        )
        alerts.transition(session, alert.id, body, actor=INSPECTOR, if_match=None, now=dismiss_at)
        return True

    acts.append(Act(dismiss_at, "dismissed", dismiss))
    return sorted(acts, key=lambda act: act.at)


__all__ = ["FILER", "INSPECTOR", "SECOND_INSPECTOR", "STORY_RULES", "Act", "Done", "Story", "plan"]
