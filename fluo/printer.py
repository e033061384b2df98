"""Stable text forms of fluo trees: DSL source again (`unparse`), and the lowering view (`show`).

`unparse` prints an expression in canonical DSL spelling; parsing its output
gives an equal tree (tested). `show` prints a checked rule as the compiler sees
it, one node per line, for `fluo explain` and golden tests. Neither depends on
Polars' own repr, which changes between releases.
"""

from __future__ import annotations

from fluo import ast
from fluo.ast import Expr
from fluo.check import CheckedRule
from fluo.compile import glob_plan

# Binding strength for parenthesisation, loosest first.
_OR, _AND, _NOT, _CMP, _ADD, _MUL, _UNARY, _ATOM = range(8)


def unparse(node: Expr) -> str:
    """The canonical DSL text of an expression."""
    return _unparse(node)[0]


_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"})


def _quote(text: str) -> str:
    """A string literal the fluo lexer reads back as `text` (it knows these escapes only)."""
    return '"' + text.translate(_ESCAPES) + '"'


def format_duration(nanos: int) -> str:
    for unit, size in (
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ):
        if nanos % size == 0 and abs(nanos) >= size:
            return f"{nanos // size}{unit}"
    return f"{nanos}ns"


def _wrap(text_level: tuple[str, int], minimum: int) -> str:
    text, level = text_level
    return f"({text})" if level < minimum else text


def _unparse(node: Expr) -> tuple[str, int]:
    match node:
        case ast.Str(value=v):
            return _quote(v), _ATOM
        case ast.Int(value=v):
            return str(v), _ATOM if v >= 0 else _UNARY
        case ast.Float(value=v):
            return repr(v), _ATOM if v >= 0 else _UNARY
        case ast.Bool(value=v):
            return ("true" if v else "false"), _ATOM
        case ast.Null():
            return "null", _ATOM
        case ast.Duration(nanos=n):
            return (format_duration(n) if n >= 0 else f"-{format_duration(-n)}"), _ATOM
        case ast.Timestamp(nanos=n):
            return f"<time {n}ns>", _ATOM
        case ast.Name(name=name):
            return name, _ATOM
        case ast.ListLit(items=items):
            return "[" + ", ".join(unparse(i) for i in items) + "]", _ATOM
        case ast.Field(name=name):
            return f"span.{name}", _ATOM
        case ast.Attribute(scope=scope, key=key):
            return f"{scope}.attributes[{_quote(key)}]", _ATOM
        case ast.Compare(op=op, left=a, right=b):
            return f"{_wrap(_unparse(a), _ADD)} {op} {_wrap(_unparse(b), _ADD)}", _CMP
        case ast.In(value=v, items=items, negated=neg):
            word = "not in" if neg else "in"
            return f"{_wrap(_unparse(v), _ADD)} {word} {unparse(items)}", _CMP
        case ast.Between(value=v, low=lo, high=hi):
            parts = (_wrap(_unparse(x), _ADD) for x in (v, lo, hi))
            return "{} between {} and {}".format(*parts), _CMP
        case ast.Match(op=op, value=v, pattern=p, ignore_case=ic):
            word = ("i" if ic else "") + op
            return f"{_wrap(_unparse(v), _ADD)} {word} {_wrap(_unparse(p), _ADD)}", _CMP
        case ast.Exists(value=v):
            return f"{_wrap(_unparse(v), _ADD)} exists", _CMP
        case ast.Not(operand=o):
            return f"not {_wrap(_unparse(o), _NOT)}", _NOT
        case ast.And(operands=ops):
            return " and ".join(_wrap(_unparse(o), _NOT) for o in ops), _AND
        case ast.Or(operands=ops):
            return " or ".join(_wrap(_unparse(o), _AND) for o in ops), _OR
        case ast.Arith(op=op, left=a, right=b):
            level = _ADD if op in "+-" else _MUL
            return f"{_wrap(_unparse(a), level)} {op} {_wrap(_unparse(b), level + 1)}", level
        case ast.Neg(operand=o):
            return f"-{_wrap(_unparse(o), _UNARY)}", _UNARY
        case ast.Call(func=f, args=args):
            return f"{f}(" + ", ".join(unparse(a) for a in args) + ")", _ATOM
        case ast.Baseline(value=value):
            return ("baseline" if value is None else f"baseline({unparse(value)})"), _ATOM
        case ast.Aggregate(scope=ast.WINDOW_SCOPE) if node in _METRIC_NAMES:
            return _METRIC_NAMES[node], _ATOM
        case ast.Aggregate(func=func, value=value, where=where, scope=scope):
            prefix = "" if scope in ("trace", ast.WINDOW_SCOPE) else f"{scope}."
            if func in ("count", "has", "missing", "rate", "ratio"):
                inner = unparse(where) if where is not None else ""
            else:
                assert value is not None
                inner = unparse(value) + (f" where {unparse(where)}" if where is not None else "")
            return f"{prefix}{func}({inner})", _ATOM
        case ast.TraceField(name=name):
            return f"trace.{name}", _ATOM
        case ast.Absent(predicate=p):
            return f"absent({unparse(p)})", _ATOM
        case ast.Bound(var=var, value=value):
            text = unparse(value)
            return var + text[len("span") :] if text.startswith("span.") else text, _ATOM
        case ast.Pattern(bindings=bindings, condition=c):
            named = ", ".join(f"{n}: {unparse(p)}" for n, p in bindings)
            return f"spans({named}) where {unparse(c)}", _OR
        case ast.Sequence(steps=steps, by=by, within=within, until=until):
            step_texts = [unparse(st) for st in steps]
            extra = f" within {format_duration(within)}" if within is not None else ""
            extra += f" by {unparse(by)}" if by is not None else ""
            extra += f" until {unparse(until)}" if until is not None else ""
            return f"sequence({', '.join(step_texts)}{extra})", _ATOM
        case ast.Related(relation=relation, value=value):
            text = unparse(value)
            return relation + text[len("span") :] if text.startswith("span.") else text, _ATOM
        case ast.Column(name=name):
            return f"<column {name}>", _ATOM
        case ast.MapGet(column=c, key=k):
            return f"<{c}[{_quote(k)}]>", _ATOM
        case ast.Cast(operand=o, to=to):
            return f"{to}({unparse(o)})", _ATOM
        case ast.InUnit(operand=o, unit_nanos=u):
            return f"({unparse(o)} in {u}ns)", _ATOM
    raise TypeError(f"cannot unparse {type(node).__name__}")


_METRIC_NAMES: dict[Expr, str] = {agg: name for name, agg in ast.WINDOW_METRICS.items()}


def show(node: Expr, indent: int = 0) -> str:
    """A checked tree as the compiler lowers it: one node per line, children indented."""
    pad = "  " * indent
    head, kids = _describe(node)
    lines = [pad + head]
    lines += [show(k, indent + 1) for k in kids]
    return "\n".join(lines)


def _describe(node: Expr) -> tuple[str, tuple[Expr, ...]]:
    match node:
        case ast.Column(name=name, type=t):
            return f"column {name} : {t}", ()
        case ast.MapGet(column=c, key=k):
            return f"map_get {c}[{_quote(k)}] : text", ()
        case ast.Cast(operand=o, to=to):
            return f"cast {to} (null if not convertible)", (o,)
        case ast.InUnit(operand=o, unit_nanos=u):
            return f"as number of {format_duration(u)}", (o,)
        case ast.Compare(op=op, left=a, right=b):
            return f"compare {op} (null -> false)", (a, b)
        case ast.In(value=v, items=items, negated=neg):
            return f"{'not in' if neg else 'in'} {unparse(items)} (is_in)", (v,)
        case ast.Between(value=v, low=lo, high=hi):
            return f"between {unparse(lo)} and {unparse(hi)} (inclusive)", (v,)
        case ast.Match(op="glob", value=v, pattern=ast.Str(value=p), ignore_case=ic):
            strategy, parts = glob_plan(p.lower() if ic else p)
            shown = ", ".join(_quote(x) for x in parts)
            case_note = " ignore-case" if ic else ""
            return f"glob {_quote(p)}{case_note} -> {strategy}({shown})", (v,)
        case ast.Match(op=op, value=v, pattern=p, ignore_case=ic):
            return f"{'i' if ic else ''}{op} {unparse(p)}", (v,)
        case ast.Exists(value=v):
            return "exists (is_not_null)", (v,)
        case ast.Not(operand=o):
            return "not", (o,)
        case ast.And(operands=ops):
            return "and", ops
        case ast.Or(operands=ops):
            return "or", ops
        case ast.Arith(op=op, left=a, right=b):
            return f"arith {op}", (a, b)
        case ast.Neg(operand=o):
            return "negate", (o,)
        case ast.Call(func=f, args=args):
            return f"call {f}", args
        case ast.Aggregate(func=func, value=value, where=where, scope=scope):
            kids = tuple(x for x in (value, where) if x is not None)
            return f"aggregate {func} over {scope}" + (
                " (value, where)" if len(kids) == 2 else ""
            ), kids
        case ast.TraceField(name=name):
            return f"trace field {name}", ()
        case ast.Absent(predicate=p):
            return "absent step (no such span between its neighbours)", (p,)
        case ast.Bound(var=var, value=value):
            return f"field of span {var}", (value,)
        case ast.Pattern(bindings=bindings, condition=c):
            return f"pattern over spans {', '.join(n for n, _ in bindings)} (joined per trace)", (
                *(p for _, p in bindings),
                c,
            )
        case ast.Sequence(steps=steps, within=within):
            head = "sequence (join_asof chain, greedy)"
            if within is not None:
                head += f" within {format_duration(within)}"
            return head, steps
        case ast.Related(relation=relation, value=value):
            return f"field of the {relation} span", (value,)
        case ast.Baseline(value=value):
            return "baseline of", () if value is None else (value,)
    return f"literal {unparse(node)}", ()


def show_rule(rule: CheckedRule) -> str:
    """The header, predicate and message of one checked rule, as `fluo explain` prints it."""
    r = rule.rule
    lines = [f"rule {r.name} [{r.severity}]"]
    if r.title:
        lines.append(f"  title: {r.title}")
    lines.append(f"  source: {unparse(r.predicate)}")
    if rule.window is not None:
        spec = rule.window.spec
        every = "" if spec.every == spec.size else f" every {format_duration(spec.every)}"
        lines.append(f"  window: {format_duration(spec.size)}{every}, min_count {spec.min_count}")
        if rule.window.by:
            lines.append(f"  by: {', '.join(unparse(k) for k in rule.window.by)}")
        if rule.window.where is not None:
            lines.append(f"  where: {unparse(rule.window.where)}")
        if spec.baseline is not None:
            b = spec.baseline
            detail = {
                "previous": f"median of the previous {b.windows} windows",
                "offset": f"the same window {format_duration(b.offset)} earlier",
                "data": "median over the windows of the --baseline data",
            }[b.kind]
            lines.append(f"  baseline: {detail}")
    if r.correlate is not None:
        c = r.correlate
        lines.append(
            f"  correlate: {', '.join(c.rules)} at least {c.count}x within "
            f"{format_duration(c.within)}" + (f" by {c.by}" if c.by else "")
        )
    lines.append(f"  reads: {', '.join(sorted(rule.columns))}")
    lines.append("  condition:")
    lines.append(show(rule.predicate, 2))
    if rule.message is not None:
        text = "".join(
            p if isinstance(p, str) else "{" + unparse(p) + "}" for p in rule.message.parts
        )
        lines.append(f"  message: {text}")
    if r.fails_run:
        lines.append("  action: fail the run when it fires")
    return "\n".join(lines)
