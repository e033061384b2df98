"""The rule set: load -> parse -> check in one call, and what a notebook needs of it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from fluo import ast
from fluo.check import CheckedRule, check_rules
from fluo.compile import rule_expression
from fluo.errors import Diagnostic, RuleError
from fluo.load import load_document, load_file
from fluo.parse import parse_rule_file
from fluo.plan import RunPlan, build_plan
from fluo.schema import SpanSchema

if TYPE_CHECKING:
    from fluo.run import Spans


@dataclass(frozen=True)
class RuleSet:
    """Parsed and checked rules, ready to compile against any span table."""

    rules: tuple[ast.Rule, ...]
    notes: tuple[Diagnostic, ...] = ()

    def __iter__(self) -> Iterator[ast.Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __getitem__(self, name: str) -> ast.Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    @property
    def enabled(self) -> tuple[ast.Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)

    def check(self, schema: SpanSchema | None = None) -> list[CheckedRule]:
        """Resolve the enabled rules against `schema` (default: the canonical span table)."""
        return check_rules(self.enabled, schema or SpanSchema.canonical())

    def expr(self, name: str, schema: SpanSchema | None = None) -> pl.Expr:
        """The Polars expression of one span rule: true on each violating span.

        Trace-level rules have no single expression (they need a group_by); use
        `compile(schema).explain(...)` to see their plans.
        """
        schema = schema or SpanSchema.canonical()
        (checked,) = check_rules([self[name]], schema)
        if checked.level != "span":
            raise ValueError(f"rule '{name}' is a trace-level rule; see RuleSet.compile()")
        return rule_expression(checked, schema)

    def exprs(self, schema: SpanSchema | None = None) -> dict[str, pl.Expr]:
        """The Polars expression of every enabled rule, by name."""
        schema = schema or SpanSchema.canonical()
        return {c.name: rule_expression(c, schema) for c in self.check(schema) if c.level == "span"}

    def compile(self, schema: SpanSchema | None = None) -> RunPlan:
        """The compiled plan of the enabled rules for a table with `schema`."""
        schema = schema or SpanSchema.canonical()
        return build_plan(self.check(schema), schema)

    def evaluate(self, spans: Spans) -> pl.DataFrame:
        """Run every enabled rule over `spans` (path(s), LazyFrame or DataFrame): the signals."""
        from fluo.run import evaluate

        return evaluate(self, spans).signals

    def select(self, names: Iterable[str]) -> RuleSet:
        """A rule set with only the named rules."""
        wanted = set(names)
        unknown = wanted - set(self.names)
        if unknown:
            raise KeyError(", ".join(sorted(unknown)))
        return RuleSet(tuple(r for r in self.rules if r.name in wanted), self.notes)

    def __add__(self, other: RuleSet) -> RuleSet:
        return merge([self, other])


def merge(sets: Sequence[RuleSet]) -> RuleSet:
    """One rule set from several; a rule name defined twice is an error."""
    rules: list[ast.Rule] = []
    seen: dict[str, ast.Rule] = {}
    errors: list[Diagnostic] = []
    for rule_set in sets:
        for rule in rule_set.rules:
            if rule.name in seen:
                first = seen[rule.name].pos
                errors.append(
                    Diagnostic(
                        f"rule '{rule.name}' is defined twice",
                        rule.pos,
                        hint=f"first defined at {first}" if first else None,
                    )
                )
                continue
            seen[rule.name] = rule
            rules.append(rule)
    if errors:
        raise RuleError(errors)
    return RuleSet(tuple(rules), tuple(n for s in sets for n in s.notes))


def load_rules(
    source: str | Path | Sequence[str | Path], *, schema: SpanSchema | None = None
) -> RuleSet:
    """Load rules from file paths, directories of *.yaml files, or YAML text.

    A string that names an existing file or directory is read from disk; any other
    string is taken as YAML text. Rules are checked against `schema` (default: the
    canonical span table) so that mistakes surface before any data is read.
    """
    errors: list[Diagnostic] = []
    sets: list[RuleSet] = []
    if isinstance(source, str | Path) and not _looks_like_path(source):
        documents = [load_document(str(source))]
    else:
        paths = [source] if isinstance(source, str | Path) else list(source)
        documents = []
        for file in (f for p in paths for f in rule_files(p)):
            try:
                documents.append(load_file(file))
            except RuleError as exc:
                errors.extend(exc.diagnostics)
    for document in documents:
        try:
            parsed = parse_rule_file(document)
        except RuleError as exc:
            errors.extend(exc.diagnostics)
            continue
        errors.extend(parsed.errors)
        sets.append(RuleSet(parsed.rules, parsed.notes))
    try:
        rule_set = merge(sets)
        checked = rule_set.check(schema)
        warnings = tuple(n for c in checked for n in c.notes)
        rule_set = RuleSet(rule_set.rules, rule_set.notes + warnings)
    except RuleError as exc:
        errors.extend(exc.diagnostics)
    if errors:
        raise RuleError(sorted(errors, key=_source_order))
    return rule_set


def _source_order(d: Diagnostic) -> tuple[str, int, int]:
    p = d.position
    return (p.file or "", p.line, p.column) if p else ("", 0, 0)


def rule_files(path: str | Path) -> list[Path]:
    """The rule files at `path`: the file itself, or every *.yaml / *.yml below a directory."""
    p = Path(path)
    if p.is_dir():
        files = sorted([*p.rglob("*.yaml"), *p.rglob("*.yml")])
        if not files:
            raise RuleError([Diagnostic(f"no rule files (*.yaml) in directory {p}")])
        return files
    if not p.exists():
        raise RuleError([Diagnostic(f"rule file not found: {p}")])
    return [p]


def _looks_like_path(source: str | Path) -> bool:
    if isinstance(source, Path):
        return True
    if not source.strip() or "\n" in source:
        return False
    return Path(source).exists() or source.endswith((".yaml", ".yml"))
