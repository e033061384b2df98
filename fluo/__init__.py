"""fluo: batch behavioral assurance for OpenTelemetry traces.

Rules written in YAML and the fluo expression language are parsed, checked
against the span schema, compiled to one fused Polars plan and run over span
tables (Parquet, Arrow IPC, OTLP JSON) to produce signals.

    >>> import fluo
    >>> rules = fluo.load_rules("data/rules")
    >>> signals = rules.evaluate("data/shophub/spans.parquet")
"""

from fluo.bench import BenchReport, bench
from fluo.convert import ConvertReport, convert
from fluo.errors import DataError, Diagnostic, FluoError, RuleError
from fluo.rules import RuleSet, load_rules
from fluo.run import RunResult, evaluate

__all__ = [
    "BenchReport",
    "ConvertReport",
    "DataError",
    "Diagnostic",
    "FluoError",
    "RuleError",
    "RuleSet",
    "RunResult",
    "bench",
    "convert",
    "evaluate",
    "load_rules",
]
__version__ = "0.1.0"
