"""Reading rule files: YAML in, a `RuleSet` or every problem out.

Each problem names the file, the rule (its id, or its position when it has none), the field and what
to do about it, because the reader is a rule author fixing a file. Loading builds a new `RuleSet` or
raises; it changes nothing, so a caller reloads atomically by swapping in the result only on success.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.rules.spec import RULE_TYPES, AnyRule, RuleBase, RuleSet

RULE_FILE_SUFFIXES = (".yaml", ".yml")
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a rule file. `index` is the rule's 0-based position in its file."""

    file: str
    message: str
    rule_id: str | None = None
    index: int | None = None
    loc: Loc = ()

    @property
    def field(self) -> str:
        """The field as a rule author writes it: `filter`, `domains[1]`."""
        text = ""
        for part in self.loc:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        return text

    def __str__(self) -> str:
        parts = [self.file]
        if self.rule_id is not None:
            parts.append(f"rule {self.rule_id}")
        elif self.index is not None:
            parts.append(f"rule #{self.index + 1}")
        if self.loc:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class RuleFileError(Exception):
    """Rule files that cannot be loaded; `problems` lists every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def load_rules(directory: Path) -> RuleSet:
    """Every rule in the `*.yaml` and `*.yml` files of `directory`, files in name order."""
    if not directory.is_dir():
        raise RuleFileError([Problem(str(directory), "not a directory of rule files")])
    rules: list[AnyRule] = []
    problems: list[Problem] = []
    first_file: dict[str, str] = {}
    for path in rule_files(directory):
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(name, f"cannot be read: {exc}"))
            continue
        found, file_problems = _parse_document(text, name)
        problems += file_problems
        for index, rule in found:
            if rule.id in first_file:
                message = f"duplicate id: rule {rule.id} is already defined in {first_file[rule.id]}"
                problems.append(Problem(name, message, rule.id, index, ("id",)))
                continue
            first_file[rule.id] = name
            rules.append(rule)
    if problems:
        raise RuleFileError(problems)
    return RuleSet(rules)


def rule_files(directory: Path) -> list[Path]:
    # Hidden files are skipped: editors leave lock and backup files such as `.#vr.yaml` beside the real one.
    return sorted(
        path
        for path in directory.iterdir()
        if path.suffix in RULE_FILE_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )


def parse_rules_text(text: str, name: str) -> list[AnyRule]:
    """The rules of one YAML document (a list of rules); `name` stands for the file in messages."""
    found, problems = _parse_document(text, name)
    if problems:
        raise RuleFileError(problems)
    return [rule for _, rule in found]


def _parse_document(text: str, name: str) -> tuple[list[tuple[int, AnyRule]], list[Problem]]:
    """The valid rules with their positions, and the problems; a duplicate id counts only once."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "invalid YAML"
        return [], [Problem(name, f"YAML syntax error{where}: {what}")]
    except yaml.YAMLError as exc:
        return [], [Problem(name, f"YAML syntax error: {exc}")]

    if data is None:  # an empty file holds no rules
        return [], []
    if not isinstance(data, list):
        kind = "a mapping" if isinstance(data, Mapping) else type(data).__name__
        return [], [Problem(name, f"must hold a list of rules (each starting with '- id: ...'), not {kind}")]

    rules: list[tuple[int, AnyRule]] = []
    problems: list[Problem] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(data):
        rule_id = item.get("id") if isinstance(item, Mapping) else None
        rule_id = rule_id if isinstance(rule_id, str) else None
        if rule_id is not None:
            if rule_id in first_index:
                message = f"duplicate id: rule #{first_index[rule_id] + 1} in this file has it too"
                problems.append(Problem(name, message, rule_id, index, ("id",)))
                continue
            first_index[rule_id] = index
        rule, rule_problems = _parse_rule(item)
        problems += [Problem(name, message, rule_id, index, loc) for loc, message in rule_problems]
        if rule is not None:
            rules.append((index, rule))
    return rules, problems


def _parse_rule(item: Any) -> tuple[AnyRule | None, list[tuple[Loc, str]]]:
    types = ", ".join(RULE_TYPES)
    if not isinstance(item, Mapping):
        return None, [((), f"a rule is a mapping of fields (id, type, …), not {type(item).__name__}")]
    rule_type = item.get("type")
    if rule_type is None:
        return None, [(("type",), f"required: one of {types}")]
    model = RULE_TYPES.get(rule_type) if isinstance(rule_type, str) else None
    if model is None:
        return None, [(("type",), f"unknown rule type {rule_type!r}; the types are {types}")]
    try:
        rule = model.model_validate(item)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A list whose items all failed is also "too short"; the items' own messages are the useful ones.
        with_bad_items = {tuple(e["loc"][:-1]) for e in errors if e["loc"] and isinstance(e["loc"][-1], int)}
        errors = [e for e in errors if not (e["type"] == "too_short" and tuple(e["loc"]) in with_bad_items)]
        return None, [_problem(model, error) for error in errors]
    assert isinstance(rule, AnyRule)
    return rule, []


def _problem(model: type[RuleBase], error: Mapping[str, Any]) -> tuple[Loc, str]:
    loc: Loc = tuple(error["loc"])
    kind: str = error["type"]
    message: str = error["msg"]
    if kind == "missing":
        message = "required"
    elif kind == "extra_forbidden":
        message = f"unknown field; a {model.model_fields['type'].default} rule has {', '.join(model.model_fields)}"
    elif kind.startswith("enum") or kind == "literal_error":
        message = message.replace("Input should be", "must be")
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    elif kind == "greater_than_equal":
        message = f"must be ≥ {error['ctx']['ge']}"
    return loc, message
