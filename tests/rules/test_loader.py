from __future__ import annotations

from pathlib import Path

import pytest

from app.rules.loader import Problem, RuleFileError, load_rules, parse_rules_text
from app.rules.spec import (
    CountRule,
    DistinctRule,
    OffHoursRule,
    RatioRule,
    RuleSet,
    SpikeRule,
    SumRule,
)
from tests.factories import CONTRACT_RULE_YAML

CONTRACT_EXAMPLE = CONTRACT_RULE_YAML

EVERY_TYPE = (
    CONTRACT_EXAMPLE
    + """\
- id: dt-pass-rate
  type: ratio
  label_zh: 考场合格率异常偏高
  label_en: Unusually high pass rate at an exam site
  domains: [driver_testing]
  filter: {action: exam}
  numerator: {attributes.result: pass}
  min_events: 30
  group_by: business_unit
  window: 1d
  warn_at: 0.9
  trip_at: 0.98
  severity: medium
- id: ag-many-operators
  type: distinct
  label_zh: 中介集中找多名经办人
  label_en: One agent served by many operators
  domains: [vehicle_registration, vehicle_inspection]
  field: operator.id
  group_by: agent
  window: 7d
  warn_at: 5
  severity: medium
- id: vh-fines-modified
  type: sum
  label_zh: 单人修改罚款金额过大
  label_en: Large fine amounts modified by one operator
  domains: [violation_handling]
  filter: {action: {in: [record_modified, record_deleted]}}
  field: attributes.fine_amount
  group_by: responsible_officer
  window: 1d
  warn_at: 5000
  trip_at: 20000
  severity: critical
  probation: 7d
- id: vi-night-inspections
  type: off_hours
  label_zh: 非工作时间检测
  label_en: Inspections outside working hours
  domains: [vehicle_inspection]
  allowed_hours: "08:00-18:00"
  group_by: business_unit
  window: 1d
  warn_at: 3
  severity: low
- id: ah-closure-spike
  type: spike
  label_zh: 事故结案量突增
  label_en: Spike in accident case closures
  domains: [accident_handling]
  filter: {action: case_closed}
  group_by: org_unit
  window: 1d
  baseline_windows: 7
  min_events: 10
  warn_at: 3
  trip_at: 5
  severity: high
"""
)


def refusal(text: str, name: str = "rules/vr.yaml") -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        parse_rules_text(text, name)
    return str(caught.value).splitlines()


def with_line(replace: str, by: str) -> str:
    assert replace in CONTRACT_EXAMPLE
    return CONTRACT_EXAMPLE.replace(replace, by)


def test_every_type_parses_from_yaml() -> None:
    rules = parse_rules_text(EVERY_TYPE, "every.yaml")
    assert [type(r) for r in rules] == [CountRule, RatioRule, DistinctRule, SumRule, OffHoursRule, SpikeRule]
    assert [r.id for r in rules] == [
        "vr-bulk-register",
        "dt-pass-rate",
        "ag-many-operators",
        "vh-fines-modified",
        "vi-night-inspections",
        "ah-closure-spike",
    ]
    assert rules[0].label_zh == "单人单小时大量上户"


def test_the_trip_at_message_names_file_rule_and_field() -> None:
    assert refusal(with_line("trip_at: 40", "trip_at: 10")) == [
        "rules/vr.yaml: rule vr-bulk-register: trip_at: must be ≥ warn_at (20)"
    ]


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        (
            "type: count",
            "type: average",
            "type: unknown rule type 'average'; the types are count, ratio, distinct, sum",
        ),
        ("type: count", "kind: count", "type: required: one of count, ratio"),
        ("severity: high", "severity: high\n  colour: red", "colour: unknown field; a count rule has id, label_zh"),
        ("group_by: operator", "group_by: officer", "group_by: must be 'operator', 'responsible_officer'"),
        ("window: 1h", "window: 1y", "window: '1y' has an unknown unit 'y'"),
        ("window: 1h", "window: 1.5h", "window: '1.5h' is not a duration"),
        ("probation: 24h", "probation: 0h", "probation: '0h' is not positive"),
        ("warn_at: 20", "warn_at: -20", "warn_at: must be ≥ 0"),
        ("trip_at: 40", "trip_at: -40", "trip_at: must be ≥ 0"),
        ("domains: [vehicle_registration]", "domains: [parking]", "domains[0]: must be 'vehicle_registration'"),
        ("filter: {action: register", "filter: {operator.name: x", "filter: unknown field path 'operator.name'"),
        ("label_en: Bulk registrations by one operator in an hour", "label_en: ''", "label_en:"),
        ("  severity: high\n", "", "severity: required"),
    ],
)
def test_refusals_name_file_rule_and_field(replace: str, by: str, expected: str) -> None:
    (message,) = refusal(with_line(replace, by))
    assert message.startswith(f"rules/vr.yaml: rule vr-bulk-register: {expected}"), message


def test_ratio_threshold_above_one_is_refused() -> None:
    text = EVERY_TYPE.split("- id: ag-many-operators")[0].replace("trip_at: 0.98", "trip_at: 98")
    (message,) = refusal(text)
    assert message.startswith("rules/vr.yaml: rule dt-pass-rate: trip_at: a ratio threshold is a share")


def test_every_problem_of_every_rule_is_reported() -> None:
    text = with_line("window: 1h", "window: 1y").replace("trip_at: 40", "trip_at: 1") + with_line(
        "id: vr-bulk-register", "id: vr-other"
    ).replace("group_by: operator", "group_by: nobody")
    lines = refusal(text)
    assert len(lines) == 3
    assert lines[0].startswith("rules/vr.yaml: rule vr-bulk-register: window:")
    assert lines[1].startswith("rules/vr.yaml: rule vr-bulk-register: trip_at:")
    assert lines[2].startswith("rules/vr.yaml: rule vr-other: group_by:")


def test_a_rule_without_an_id_is_named_by_its_position() -> None:
    text = CONTRACT_EXAMPLE + with_line("- id: vr-bulk-register\n  type", "- type")
    assert refusal(text) == ["rules/vr.yaml: rule #2: id: required"]


def test_a_rule_that_is_not_a_mapping_is_refused() -> None:
    (message,) = refusal(CONTRACT_EXAMPLE + "- just text\n")
    assert message == "rules/vr.yaml: rule #2: a rule is a mapping of fields (id, type, …), not str"


def test_duplicate_ids_in_one_file_are_refused() -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_rules_text(CONTRACT_EXAMPLE + CONTRACT_EXAMPLE, "rules/vr.yaml")
    (problem,) = caught.value.problems
    assert problem == Problem(
        file="rules/vr.yaml",
        message="duplicate id: rule #1 in this file has it too",
        rule_id="vr-bulk-register",
        index=1,
        loc=("id",),
    )
    assert str(problem) == "rules/vr.yaml: rule vr-bulk-register: id: duplicate id: rule #1 in this file has it too"


@pytest.mark.parametrize(
    ("text", "kind"),
    [("id: vr-bulk-register\ntype: count\n", "a mapping"), ("just text\n", "str"), ("42\n", "int")],
)
def test_a_file_that_is_not_a_list_is_refused(text: str, kind: str) -> None:
    assert refusal(text) == [f"rules/vr.yaml: must hold a list of rules (each starting with '- id: ...'), not {kind}"]


def test_yaml_syntax_errors_give_the_line() -> None:
    text = CONTRACT_EXAMPLE.replace("group_by: operator", "group_by: [operator")
    (message,) = refusal(text)
    assert message.startswith("rules/vr.yaml: YAML syntax error at line ")
    line = int(message.split("at line ")[1].split(",")[0])
    assert 7 <= line <= 9


def test_an_empty_document_holds_no_rules() -> None:
    assert parse_rules_text("", "empty.yaml") == []
    assert parse_rules_text("# nothing yet\n", "empty.yaml") == []
    assert parse_rules_text("[]", "empty.yaml") == []


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_rules_reads_yaml_and_yml_files_in_name_order(tmp_path: Path) -> None:
    parts = EVERY_TYPE.split("- id: ")
    write(tmp_path, "b.yml", "- id: " + parts[2])
    write(tmp_path, "a.yaml", "- id: " + parts[1] + "- id: " + parts[3])
    write(tmp_path, "notes.txt", "- not: yaml rules")
    write(tmp_path, ".#a.yaml", "{broken")
    rules = load_rules(tmp_path)
    assert isinstance(rules, RuleSet)
    assert rules.ids == ("vr-bulk-register", "ag-many-operators", "dt-pass-rate")


def test_an_empty_directory_holds_no_rules(tmp_path: Path) -> None:
    assert len(load_rules(tmp_path)) == 0


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="not a directory"):
        load_rules(tmp_path / "nowhere")


def test_duplicate_ids_across_files_name_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", CONTRACT_EXAMPLE)
    second = write(tmp_path, "b.yaml", CONTRACT_EXAMPLE)
    with pytest.raises(RuleFileError) as caught:
        load_rules(tmp_path)
    assert str(caught.value) == (
        f"{second}: rule vr-bulk-register: id: duplicate id: rule vr-bulk-register is already defined in {first}"
    )


def test_problems_in_several_files_are_all_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "{not: a list}\n")
    write(tmp_path, "b.yaml", with_line("window: 1h", "window: 1y"))
    write(tmp_path, "c.yaml", "- [unclosed\n")
    (tmp_path / "d.yaml").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(RuleFileError) as caught:
        load_rules(tmp_path)
    files = [Path(p.file).name for p in caught.value.problems]
    assert files == ["a.yaml", "b.yaml", "c.yaml", "d.yaml"]
    assert "cannot be read" in caught.value.problems[3].message


def test_loading_twice_gives_equal_rule_sets(tmp_path: Path) -> None:
    write(tmp_path, "all.yaml", EVERY_TYPE)
    assert load_rules(tmp_path) == load_rules(tmp_path)


def test_a_field_path_is_written_as_a_rule_author_writes_it() -> None:
    problem = Problem("f.yaml", "bad", rule_id="r", index=0, loc=("filter", "in", 2))
    assert problem.field == "filter.in[2]"
    assert str(problem) == "f.yaml: rule r: filter.in[2]: bad"
