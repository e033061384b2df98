"""FLUO conformance: all 45 rules of FLUO's (BeTrace's) example library, in fluo.

data/rules/fluo-library/ holds the 45 rules (README.md there says which are FLUO's V2
conditions as written and which state the original intent instead, and why). Each
rule has, below, traces that must trip it (and where the signal must point) and
near-miss traces that must not. The whole library also runs over one table with every
case's traces at once, and each rule must fire exactly on its own tripping traces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest
import yaml
from conftest import REPO, spans
from typer.testing import CliRunner

import fluo
from fluo.cli import app

LIBRARY = REPO / "data" / "rules" / "fluo-library"
NS_PER_MS = 1_000_000
Span = dict[str, Any]


def s(name: str, attrs: dict[str, Any] | None = None, *, parent: int | None = 0, **kw: Any) -> Span:
    """A span of a test trace: its name and attributes (`attrs`, plus keyword attributes).

    `parent` is the index of the parent among the trace's spans (default: the trace's
    root, index 0); `cols` gives span table columns (duration_ns, status_code, ...).
    """
    cols = kw.pop("cols", {})
    return {"name": name, "attrs": {**(attrs or {}), **kw}, "parent": parent, **cols}


def root(name: str = "request", **kw: Any) -> Span:
    """The root span of a test trace."""
    return s(name, parent=None, **kw)


@dataclass(frozen=True)
class Trace:
    """A test trace: its spans (the first is the root) and, if it trips, the anchor's index."""

    spans: tuple[Span, ...]
    anchor: int = 1


def t(*spans_: Span, anchor: int = 1) -> Trace:
    return Trace(tuple(spans_), anchor)


@dataclass(frozen=True)
class Case:
    rule: str
    severity: str
    trips: tuple[Trace, ...]
    near_misses: tuple[Trace, ...]


CASES: list[Case] = [
    # --- AI agent safety (ai-agent-safety.yaml) -------------------------------------
    Case(
        "ai-agent-goal-deviation",
        "critical",
        trips=(
            t(
                root("agent.run"),
                s("agent.plan.created", {"agent.task": "legal_research"}),
                s("agent.plan.executed"),
                s("agent.action", action="database_query", goal_deviation_score=0.7, parent=2),
            ),
        ),
        near_misses=(
            # on goal (FLUO's V2 condition fires exactly here)
            t(
                root("agent.run"),
                s("agent.plan.created"),
                s("agent.plan.executed"),
                s("agent.action", goal_deviation_score=0.1, parent=2),
            ),
            # deviation at the threshold is not above it
            t(
                root("agent.run"),
                s("agent.plan.created"),
                s("agent.plan.executed"),
                s("agent.action", goal_deviation_score=0.3, parent=2),
            ),
            # the plan was never executed
            t(
                root("agent.run"),
                s("agent.plan.created"),
                s("agent.action", goal_deviation_score=0.9),
            ),
        ),
    ),
    Case(
        "ai-agent-prompt-injection",
        "critical",
        trips=(
            t(
                root("agent.run"),
                s("agent.instruction_received", instruction="ignore previous instructions"),
                s("agent.instruction_source", source="external_attacker", parent=1),
            ),
            # a source span that does not say where the instruction came from
            t(
                root("agent.run"),
                s("agent.instruction_received"),
                s("agent.instruction_source", parent=1),
            ),
        ),
        near_misses=(
            t(
                root("agent.run"),
                s("agent.instruction_received"),
                s("agent.instruction_source", source="user", parent=1),
            ),
            t(
                root("agent.run"),
                s("agent.instruction_received"),
                s("agent.instruction_source", source="authorized_api", parent=1),
            ),
            # an injected source, but no instruction was received
            t(root("agent.run"), s("agent.instruction_source", source="external_attacker")),
        ),
    ),
    Case(
        "ai-agent-unauthorized-tool-use",
        "high",
        trips=(
            t(
                root("agent.run"),
                s("agent.tool_use", tool="shell_exec", tool_requires_approval=True),
                s("agent.action_executed", status="blocked"),
            ),
        ),
        near_misses=(
            t(
                root("agent.run"),
                s("human.approval_granted", approver="alice"),
                s("agent.tool_use", tool="shell_exec", tool_requires_approval=True),
            ),
            t(root("agent.run"), s("agent.tool_use", tool="search", tool_requires_approval=False)),
            t(root("agent.run"), s("agent.tool_use", tool="search")),
        ),
    ),
    Case(
        "ai-agent-delegation-boundary",
        "high",
        trips=(
            t(
                root("agent.run"),
                s("agent.delegation", delegator="legal_research_agent"),
                s("agent.delegate", delegate="external_gpt4_api", approved=False, parent=1),
            ),
            # approval unknown: not on the approved list
            t(
                root("agent.run"),
                s("agent.delegation"),
                s("agent.delegate", delegate="external_gpt4_api", parent=1),
            ),
        ),
        near_misses=(
            t(
                root("agent.run"),
                s("agent.delegation"),
                s("agent.delegate", delegate="summarizer_agent", approved=True, parent=1),
            ),
            t(root("agent.run"), s("agent.delegate", delegate="x", approved=False)),
        ),
    ),
    Case(
        "ai-hallucination-medical-citation",
        "critical",
        trips=(
            t(
                root("diagnose"),
                s("medical.diagnosis", diagnosis="Type 2 Diabetes", confidence=0.85),
                s("clinical.recommendation", treatment="Metformin"),
            ),
        ),
        near_misses=(
            t(
                root("diagnose"),
                s("medical.diagnosis", diagnosis="Type 2 Diabetes"),
                s("source_citation", source="pubmed:123", parent=1),
            ),
            t(root("diagnose"), s("clinical.recommendation")),
        ),
    ),
    Case(
        "ai-hallucination-low-confidence",
        "high",
        trips=(
            t(
                root("answer"),
                s("factual_claim", claim="revenue was $5M", confidence=0.55),
                s("response_generated", disclosure=False),
            ),
        ),
        near_misses=(
            t(
                root("answer"),
                s("factual_claim", confidence=0.55),
                s("uncertainty_disclosure", parent=1),
            ),
            t(root("answer"), s("factual_claim", confidence=0.7)),
            t(root("answer"), s("factual_claim", confidence=0.95)),
            t(root("answer"), s("factual_claim")),  # confidence unknown
        ),
    ),
    Case(
        "ai-financial-advice-verification",
        "critical",
        trips=(t(root("advise"), s("financial.advice", recommendation="Buy ACME")),),
        near_misses=(
            t(
                root("advise"),
                s("data_source_verification", source="sec_filings"),
                s("financial.advice", recommendation="Buy ACME"),
            ),
        ),
    ),
    Case(
        "ai-bias-hiring-decision",
        "critical",
        trips=(
            t(
                root("screen"),
                s("hiring.decision", decision="rejected"),
                s("statistical_analysis", bias_detected=True, approval_rate_protected=0.45),
            ),
        ),
        near_misses=(
            # no bias found (FLUO's V2 condition fires exactly here)
            t(
                root("screen"),
                s("hiring.decision", decision="rejected"),
                s("statistical_analysis", bias_detected=False),
            ),
            t(root("screen"), s("statistical_analysis", bias_detected=True)),
        ),
    ),
    Case(
        "ai-loss-of-control-unauthorized-access",
        "critical",
        trips=(
            t(
                root("agent.run"),
                s("unauthorized_access_attempt", actor_type="ai_agent", target="/etc/passwd"),
            ),
            # FLUO's `always { security_alert }` trick would stay silent here
            t(
                root("agent.run"),
                s("unauthorized_access_attempt", actor_type="ai_agent"),
                s("security_alert"),
            ),
        ),
        near_misses=(
            t(root("login"), s("unauthorized_access_attempt", actor_type="human")),
            t(root("login"), s("unauthorized_access_attempt")),
        ),
    ),
    Case(
        "ai-oversight-evasion",
        "critical",
        trips=(t(root("agent.run"), s("oversight.evasion_attempt", method="disable_logging")),),
        near_misses=(t(root("agent.run"), s("oversight.check", method="disable_logging")),),
    ),
    Case(
        "ai-dual-use-cyber-recon",
        "critical",
        trips=(t(root("agent.run"), s("network.scan", source="ai_agent", target="10.0.0.0/8")),),
        near_misses=(t(root("secops.run"), s("network.scan", source="security_team")),),
    ),
    Case(
        "ai-dual-use-dangerous-synthesis",
        "critical",
        trips=(t(root("chat"), s("query.biological_synthesis", hazard_level="high")),),
        near_misses=(
            t(root("chat"), s("query.biological_synthesis", hazard_level="low")),
            t(root("chat"), s("query.chemical_synthesis", hazard_level="high")),
        ),
    ),
    # --- compliance (compliance-evidence.yaml) --------------------------------------
    Case(
        "soc2-cc6-1-pii-access-authorization",
        "critical",
        trips=(
            t(
                root("GET /patients"),
                s("database.query", {"data.contains_pii": True, "table": "patients"}),
            ),
        ),
        near_misses=(
            t(
                root("GET /patients"),
                s("auth.check", user="dr_jones"),
                s("database.query", {"data.contains_pii": True}),
            ),
            t(root("GET /stats"), s("database.query", {"data.contains_pii": False})),
            # a bare `contains_pii` is another attribute than "data.contains_pii"
            t(root("GET /stats"), s("database.query", contains_pii=True)),
        ),
    ),
    Case(
        "soc2-cc7-2-pii-access-audit-log",
        "high",
        trips=(t(root("GET /records"), s("pii.access", resource="patient_records")),),
        near_misses=(t(root("GET /records"), s("pii.access"), s("audit.log", parent=1)),),
    ),
    Case(
        "hipaa-164-312-a-pii-unique-user-id",
        "critical",
        trips=(
            t(
                root("GET /chart"),
                s("phi.access", resource="medical_records"),
                s("auth.user_identified", user_id_present=False),
                s("audit.log", log_type="hipaa_audit"),
            ),
            t(root("GET /chart"), s("phi.access"), s("audit.log", log_type="hipaa_audit")),
        ),
        near_misses=(
            t(
                root("GET /chart"),
                s("auth.user_identified", user_id_present=True),
                s("phi.access"),
                s("audit.log", log_type="hipaa_audit"),
            ),
        ),
    ),
    Case(
        "hipaa-164-312-b-audit-controls",
        "critical",
        trips=(
            t(
                root("GET /chart"),
                s("auth.user_identified", user_id_present=True),
                s("phi.access", resource="patient_diagnosis"),
                s("audit.log", log_type="app"),
                anchor=2,
            ),
        ),
        near_misses=(
            t(
                root("GET /chart"),
                s("auth.user_identified", user_id_present=True),
                s("phi.access"),
                s("audit.log", log_type="hipaa_audit"),
            ),
        ),
    ),
    Case(
        "hipaa-164-312-encryption",
        "critical",
        trips=(
            t(root("send.records"), s("phi.transmission", protocol="http")),
            # encrypted, but with an algorithm that is not approved
            t(
                root("send.records"),
                s("phi.transmission", protocol="https"),
                s("encryption.applied", encrypted=True, algorithm="DES", parent=1),
            ),
        ),
        near_misses=(
            t(
                root("send.records"),
                s("phi.transmission"),
                s("encryption.applied", encrypted=True, algorithm="TLS1_3", parent=1),
            ),
            t(
                root("send.records"),
                s("phi.transmission"),
                s("encryption.applied", algorithm="AES256", parent=1),
            ),
        ),
    ),
    Case(
        "soc2-cc6-6-encryption-at-rest",
        "high",
        trips=(
            t(
                root("POST /cards"),
                s("database.write", {"data.sensitive": True, "table": "payment_methods"}),
                s("encryption.at_rest", enabled=False, parent=1),
            ),
            # encryption enabled, but not AES-256 (FLUO's V2 `enabled == true` passes it)
            t(
                root("POST /cards"),
                s("database.write", {"data.sensitive": True}),
                s("encryption.at_rest", enabled=True, algorithm="DES", parent=1),
            ),
        ),
        near_misses=(
            t(
                root("POST /cards"),
                s("database.write", {"data.sensitive": True}),
                s("encryption.at_rest", enabled=True, algorithm="AES256", parent=1),
            ),
            t(root("POST /logs"), s("database.write", {"data.sensitive": False})),
        ),
    ),
    Case(
        "soc2-cc8-1-change-management",
        "high",
        trips=(
            t(root("deploy"), s("deployment.production", service="payment-api")),
            t(
                root("deploy"),
                s("deployment.production"),
                s("change.approval", approver_role="developer", approver_verified=True),
            ),
        ),
        near_misses=(
            t(
                root("deploy"),
                s("change.approval", approver_role="manager"),
                s("deployment.production"),
            ),
            t(root("deploy"), s("deployment.staging")),
        ),
    ),
    Case(
        "fedramp-ac-2-account-management",
        "high",
        trips=(
            t(root("POST /users"), s("user.provision", role="admin")),
            t(
                root("POST /users"),
                s("user.provision", role="admin"),
                s("approval.granted", approver_verified=False),
            ),
        ),
        near_misses=(
            t(
                root("POST /users"),
                s("approval.granted", approver_verified=True),
                s("user.provision", role="admin"),
            ),
        ),
    ),
    Case(
        "fedramp-au-2-audit-events",
        "critical",
        trips=(t(root("sudo"), s("security.event", event_type="privilege_escalation")),),
        near_misses=(
            t(
                root("sudo"),
                s("security.event", event_type="privilege_escalation"),
                s("audit.log", parent=1),
            ),
            # not an auditable event type
            t(root("healthz"), s("security.event", event_type="heartbeat")),
        ),
    ),
    Case(
        "pci-dss-7-1-access-control",
        "critical",
        trips=(
            t(
                root("GET /cards"),
                s("cardholder_data.access", card="****1234"),
                s("auth.check", role="viewer"),
                s("audit.log", log_type="pci_audit"),
            ),
        ),
        near_misses=(
            t(
                root("GET /cards"),
                s("auth.check", role="payment_processor"),
                s("cardholder_data.access"),
                s("audit.log", log_type="pci_audit"),
            ),
        ),
    ),
    Case(
        "pci-dss-10-2-audit-trail",
        "critical",
        trips=(
            t(
                root("GET /cards"),
                s("auth.check", role="admin"),
                s("cardholder_data.access", operation="read"),
                anchor=2,
            ),
        ),
        near_misses=(
            t(
                root("GET /cards"),
                s("auth.check", role="admin"),
                s("cardholder_data.access"),
                s("audit.log", log_type="pci_audit"),
            ),
        ),
    ),
    Case(
        "gdpr-article-32-security-processing",
        "high",
        trips=(
            t(
                root("batch.export"),
                s("personal_data.processing", data_type="email_addresses"),
                s("security.measures", encryption_enabled=False),
            ),
        ),
        near_misses=(
            t(
                root("batch.export"),
                s("personal_data.processing"),
                s("security.measures", encryption_enabled=True),
            ),
        ),
    ),
    Case(
        "gdpr-article-22-automated-decision",
        "high",
        trips=(t(root("POST /loan"), s("automated_decision", decision="deny", legal_effect=True)),),
        near_misses=(
            t(
                root("POST /loan"),
                s("automated_decision", legal_effect=True),
                s("human_review.available"),
            ),
            t(root("GET /feed"), s("automated_decision", legal_effect=False)),
        ),
    ),
    Case(
        "iso27001-a9-2-1-user-registration",
        "medium",
        trips=(
            t(
                root("POST /signup"),
                s("user.registration", user_id="new_user"),
                s("formal_approval", documented=False),
            ),
        ),
        near_misses=(
            t(
                root("POST /signup"),
                s("formal_approval", documented=True),
                s("user.registration"),
            ),
        ),
    ),
    Case(
        "compliance-span-signature-verification",
        "critical",
        trips=(
            t(
                root("evidence.emit"),
                s("compliance.evidence", control="SOC2_CC6_1"),
                s("signature.verified", valid=False, reason="signature_mismatch", parent=1),
            ),
        ),
        near_misses=(
            t(
                root("evidence.emit"),
                s("compliance.evidence"),
                s("signature.verified", valid=True, parent=1),
            ),
        ),
    ),
    # --- SRE and reliability (reliability-sre.yaml) ---------------------------------
    Case(
        "payment-fraud-check-required",
        "critical",
        trips=(
            t(
                root("POST /checkout"),
                s("payment.charge_card", amount=5000, currency="USD", processor="stripe"),
            ),
        ),
        near_misses=(
            t(
                root("POST /checkout"),
                s("payment.fraud_check", score=0.1),
                s("payment.charge_card", amount=5000),
            ),
            t(root("POST /checkout"), s("payment.charge_card", amount=900)),
            t(root("POST /checkout"), s("payment.charge_card", amount=1000)),
            t(root("POST /checkout"), s("payment.charge_card")),
        ),
    ),
    Case(
        "http-500-error-logging",
        "high",
        trips=(
            t(
                root("GET /api/v1/payment"),
                s("http.request"),
                s("http.response", status=503, endpoint="/api/v1/payment"),
                anchor=2,
            ),
        ),
        near_misses=(
            t(
                root("GET /api/v1/payment"),
                s("http.request"),
                s("http.response", status=500),
                s("error.logged"),
            ),
            t(root("GET /api/v1/payment"), s("http.request"), s("http.response", status=404)),
        ),
    ),
    Case(
        "database-query-timeout",
        "medium",
        trips=(
            t(
                root("GET /orders"),
                s("database.query", table="orders", cols={"duration_ns": 5000 * NS_PER_MS}),
            ),
        ),
        near_misses=(
            t(root("GET /orders"), s("database.query", cols={"duration_ns": 1000 * NS_PER_MS})),
            t(root("GET /orders"), s("database.query", cols={"duration_ns": 20 * NS_PER_MS})),
        ),
    ),
    Case(
        "api-excessive-retries",
        "high",
        trips=(t(root("GET /profile"), *(s("http.retry", attempt=i) for i in range(1, 5))),),
        near_misses=(t(root("GET /profile"), *(s("http.retry", attempt=i) for i in range(1, 4))),),
    ),
    Case(
        "request-response-mismatch",
        "high",
        trips=(
            t(
                root("batch"),
                s("http.request", method="POST"),
                s("http.request", method="POST"),
                s("http.request", method="POST"),
                s("http.response", status=200),
                s("http.response", status=200),
                anchor=1,  # the earliest span the rule needs: the first request
            ),
        ),
        near_misses=(
            t(
                root("batch"),
                s("http.request"),
                s("http.response", status=200),
                s("http.request"),
                s("http.response", status=200),
            ),
        ),
    ),
    Case(
        "circuit-breaker-tripped",
        "high",
        trips=(t(root("POST /pay"), s("circuit_breaker.opened", service="payment_service")),),
        near_misses=(t(root("POST /pay"), s("circuit_breaker.closed")),),
    ),
    Case(
        "cache-stampede-detection",
        "medium",
        trips=(
            # 11 misses of one key (signal on its first miss), among misses of another
            t(
                root("GET /profile"),
                s("cache.miss", key="other"),
                *(s("cache.miss", key="user_profile_123") for _ in range(11)),
                anchor=2,
            ),
        ),
        near_misses=(
            # 11 misses, but of two keys: FLUO's `count(cache.miss) > 10` fires here
            t(
                root("GET /profile"),
                *(s("cache.miss", key="a") for _ in range(6)),
                *(s("cache.miss", key="b") for _ in range(5)),
            ),
            t(root("GET /profile"), *(s("cache.miss", key="a") for _ in range(10))),
        ),
    ),
    Case(
        "distributed-trace-incomplete",
        "medium",
        trips=(
            t(root("ingest"), s("trace.incomplete", expected_span_count=5, actual_span_count=3)),
            # numbers, not text: "12" < "9" as text
            t(root("ingest"), s("trace.incomplete", expected_span_count=12, actual_span_count=9)),
        ),
        near_misses=(
            t(root("ingest"), s("trace.incomplete", expected_span_count=5, actual_span_count=5)),
            t(root("ingest"), s("trace.incomplete", expected_span_count=9, actual_span_count=12)),
            t(root("ingest"), s("trace.incomplete", expected_span_count=5)),
        ),
    ),
    Case(
        "rate-limit-exceeded",
        "medium",
        trips=(t(root("GET /search"), s("rate_limit.exceeded", client_id="c123", limit=100)),),
        near_misses=(t(root("GET /search"), s("rate_limit.checked", client_id="c123")),),
    ),
    Case(
        "memory-leak-detection",
        "high",
        trips=(t(root("report.build"), s("memory.usage", growth_rate_mb_per_sec=12.5)),),
        near_misses=(
            t(root("report.build"), s("memory.usage", growth_rate_mb_per_sec=10)),
            t(root("report.build"), s("memory.usage", growth_rate_mb_per_sec=0.5)),
        ),
    ),
    Case(
        "deadlock-detection",
        "critical",
        trips=(
            t(
                root("POST /transfer"),
                s("lock.acquired", resource="account_123", lock_type="exclusive"),
                s("lock.timeout", wait_time_ms=5000),
            ),
        ),
        near_misses=(
            # an exclusive lock without a timeout (FLUO's V2 condition fires exactly here)
            t(root("POST /transfer"), s("lock.acquired", lock_type="exclusive")),
            t(
                root("POST /transfer"),
                s("lock.acquired", lock_type="shared"),
                s("lock.timeout", wait_time_ms=5000),
            ),
        ),
    ),
    Case(
        "queue-depth-overflow",
        "high",
        trips=(
            t(root("consume"), s("queue.depth", queue="payments", depth=10000, max_capacity=5000)),
        ),
        near_misses=(
            # "9" > "10" as text: the attributes must compare as numbers
            t(root("consume"), s("queue.depth", depth=9, max_capacity=10)),
            t(root("consume"), s("queue.depth", depth=5000, max_capacity=5000)),
            t(root("consume"), s("queue.depth", depth=10000)),
        ),
    ),
    Case(
        "api-key-validation-missing",
        "critical",
        trips=(t(root("gateway"), s("api.request", endpoint="/api/v1/users", method="GET")),),
        near_misses=(
            t(root("gateway"), s("api.validate_key"), s("api.request", endpoint="/api/v1/users")),
        ),
    ),
    Case(
        "admin-endpoint-authorization",
        "critical",
        trips=(
            t(
                root("gateway"),
                s("api.validate_key"),
                s("api.request", endpoint="/api/v1/admin/users", method="DELETE"),
                anchor=2,
            ),
        ),
        near_misses=(
            t(
                root("gateway"),
                s("api.validate_key"),
                s("auth.check_admin"),
                s("api.request", endpoint="/api/v2/admin/users"),
            ),
            t(root("gateway"), s("api.validate_key"), s("api.request", endpoint="/api/v1/admins")),
        ),
    ),
    Case(
        "connection-pool-exhaustion",
        "high",
        trips=(
            t(
                root("GET /orders"),
                s("database.connection_acquire", pool_size=10, wait_time_ms=5000),
            ),
        ),
        near_misses=(t(root("GET /orders"), s("database.connection_acquire", wait_time_ms=3)),),
    ),
    Case(
        "cascading-failure-detection",
        "critical",
        trips=(
            t(
                root("POST /order"),
                s("service.failure", service="payment_service", failure_count=3),
                s("dependency.failure", dependent_service="order_service", parent=1),
                s("dependency.failure", dependent_service="notification_service", parent=1),
            ),
        ),
        near_misses=(
            # a repeated failure that did not cascade (FLUO's V2 condition fires here)
            t(root("POST /order"), s("service.failure", failure_count=3)),
            t(
                root("POST /order"),
                s("service.failure", failure_count=1),
                s("dependency.failure", parent=1),
            ),
        ),
    ),
    Case(
        "latency-sla-violation",
        "medium",
        trips=(t(root("slo.report"), s("operation.latency", duration_ms=750, percentile="p99")),),
        near_misses=(
            t(root("slo.report"), s("operation.latency", duration_ms=750, percentile="p50")),
            t(root("slo.report"), s("operation.latency", duration_ms=450, percentile="p99")),
            # the span itself is slow, but the reported p99 is within the SLA
            t(
                root("slo.report"),
                s(
                    "operation.latency",
                    duration_ms=20,
                    percentile="p99",
                    cols={"duration_ns": 10**9},
                ),
            ),
        ),
    ),
    Case(
        "multi-region-latency",
        "medium",
        trips=(
            t(
                root("GET /catalog"),
                s("cross_region.request", source_region="us-east-1", latency_ms=500),
            ),
        ),
        near_misses=(t(root("GET /catalog"), s("cross_region.request", latency_ms=120)),),
    ),
]

#: FLUO's V2 conditions (report section 2.1) that fluo runs as FLUO wrote them.
VERBATIM = {
    "soc2-cc7-2-pii-access-audit-log": "when { pii.access } always { audit.log }",
    "hipaa-164-312-a-pii-unique-user-id": (
        "when { phi.access } always { auth.user_identified.where(user_id_present == true) }"
    ),
    "hipaa-164-312-b-audit-controls": (
        "when { phi.access } always { audit.log.where(log_type == hipaa_audit) }"
    ),
    "fedramp-ac-2-account-management": (
        "when { user.provision } always { approval.granted.where(approver_verified == true) }"
    ),
    "pci-dss-10-2-audit-trail": (
        "when { cardholder_data.access } always { audit.log.where(log_type == pci_audit) }"
    ),
    "gdpr-article-32-security-processing": (
        "when { personal_data.processing } always "
        "{ security.measures.where(encryption_enabled == true) }"
    ),
    "gdpr-article-22-automated-decision": (
        "when { automated_decision.where(legal_effect == true) } always { human_review.available }"
    ),
    "iso27001-a9-2-1-user-registration": (
        "when { user.registration } always { formal_approval.where(documented == true) }"
    ),
    "compliance-span-signature-verification": (
        "when { compliance.evidence } always { signature.verified.where(valid == true) }"
    ),
    "payment-fraud-check-required": (
        "when { payment.charge_card.where(amount > 1000) } always { payment.fraud_check }"
    ),
    "api-key-validation-missing": "when { api.request } always { api.validate_key }",
    "admin-endpoint-authorization": (
        'when { api.request.where(endpoint matches "/api/v[0-9]+/admin/.*") } '
        "always { auth.check_admin }"
    ),
}


#: FLUO's V2 conditions (report section 2.1) of the rules the library rewrites, where they
#: load in fluo; on the cases above, each fires where it must not or misses a violation.
FLUO_V2_REWRITTEN = {
    "ai-agent-goal-deviation": (
        "when { agent.plan.created and agent.plan.executed } "
        "always { agent.action.where(goal_deviation_score > 0.3) }"
    ),
    "ai-agent-prompt-injection": (
        "when { agent.instruction_received } "
        "always { agent.instruction_source.where(authorized == false) }"
    ),
    "ai-agent-unauthorized-tool-use": (
        "when { agent.tool_use.where(tool_requires_approval == true) } "
        "never { human.approval_granted }"
    ),
    "ai-agent-delegation-boundary": (
        "when { agent.delegation } always { agent.delegate.where(approved == false) }"
    ),
    "ai-hallucination-medical-citation": "when { medical.diagnosis } never { source_citation }",
    "ai-hallucination-low-confidence": (
        "when { factual_claim.where(confidence < 0.7) } never { uncertainty_disclosure }"
    ),
    "ai-financial-advice-verification": (
        "when { financial.advice } never { data_source_verification }"
    ),
    "ai-bias-hiring-decision": (
        "when { hiring.decision } always { statistical_analysis.where(bias_detected == true) }"
    ),
    "ai-loss-of-control-unauthorized-access": (
        "when { unauthorized_access_attempt.where(actor_type == ai_agent) } "
        "always { security_alert }"
    ),
    "hipaa-164-312-encryption": (
        "when { phi.transmission } always { encryption.applied.where(encrypted == true) }"
    ),
    "soc2-cc6-6-encryption-at-rest": (
        "when { database.write.where(data.sensitive == true) } "
        "always { encryption.at_rest.where(enabled == true) }"
    ),
    "soc2-cc8-1-change-management": (
        "when { deployment.production } always { change.approval.where(approver_verified == true) }"
    ),
    "fedramp-au-2-audit-events": "when { security.event } always { audit.log }",
    "pci-dss-7-1-access-control": (
        "when { cardholder_data.access } always { auth.check.where(authorized == true) }"
    ),
    "cache-stampede-detection": "when { count(cache.miss) > 10 } always { cache_warming_alert }",
    "distributed-trace-incomplete": (
        "when { trace.incomplete.where(expected_span_count > actual_span_count) } "
        "always { observability_alert }"
    ),
    "deadlock-detection": (
        "when { lock.acquired.where(lock_type == exclusive) } always { lock.timeout }"
    ),
    "queue-depth-overflow": (
        "when { queue.depth.where(depth > max_capacity) } always { capacity_alert }"
    ),
    "cascading-failure-detection": (
        "when { service.failure.where(failure_count > 1) } always { dependency.failure }"
    ),
    "latency-sla-violation": (
        "when { operation.latency.where(duration_ms > 500) } always { sla_alert }"
    ),
}

CASE = {c.rule: c for c in CASES}


@pytest.fixture(scope="module")
def library() -> fluo.RuleSet:
    return fluo.load_rules(LIBRARY)


def table(traces: list[Trace]) -> tuple[pl.DataFrame, list[list[str]]]:
    """One span table with the traces (trace n has trace key n) and each trace's span ids."""
    rows: list[Span] = []
    ids: list[list[str]] = []
    for n, trace in enumerate(traces, start=1):
        span_ids = [f"{n:08x}{i + 1:08x}" for i in range(len(trace.spans))]
        ids.append(span_ids)
        for i, spec in enumerate(trace.spans):
            row = dict(spec)
            parent = row.pop("parent")
            row.update(
                trace_id=f"{n:032x}",
                trace_key=n,
                span_id=span_ids[i],
                parent_span_id=None if parent is None else span_ids[parent],
            )
            rows.append(row)
    return spans(*rows), ids


def fired(rule_set: fluo.RuleSet, df: pl.DataFrame) -> set[tuple[str, str, str]]:
    out = rule_set.evaluate(df)
    return set(out.select("rule", "trace_id", "span_id").iter_rows())


def anchors(case: Case, traces: list[Trace], ids: list[list[str]]) -> set[tuple[str, str, str]]:
    return {(case.rule, f"{n:032x}", ids[n - 1][trace.anchor]) for n, trace in enumerate(traces, 1)}


def params() -> list[Any]:
    return [pytest.param(c, id=c.rule) for c in CASES]


def test_the_library_has_the_45_rules_with_fluo_severities(library: fluo.RuleSet) -> None:
    assert len(CASES) == 45
    assert library.names == [c.rule for c in CASES]  # files sort in FLUO's order
    for case in CASES:
        rule = library[case.rule]
        assert rule.severity == case.severity, case.rule
        assert rule.description and rule.tags, case.rule


def test_fluo_check_accepts_the_directory() -> None:
    result = CliRunner().invoke(app, ["check", str(LIBRARY)])
    assert result.exit_code == 0, result.stderr
    assert "ok: 45 rules" in result.stdout


def test_verbatim_conditions_are_fluos_text() -> None:
    """The rules kept as FLUO wrote them carry FLUO's V2 condition, as written."""
    conditions = {}
    for path in sorted(LIBRARY.glob("*.yaml")):
        for name, body in yaml.safe_load(path.read_text())["rules"].items():
            conditions[name] = " ".join(body.get("condition", "").split())
    for name, text in VERBATIM.items():
        assert conditions[name] == text, name


@pytest.mark.parametrize("case", params())
def test_rule_fires_on_its_tripping_traces(library: fluo.RuleSet, case: Case) -> None:
    traces = list(case.trips)
    df, ids = table(traces)
    assert fired(library.select([case.rule]), df) == anchors(case, traces, ids)


@pytest.mark.parametrize("case", params())
def test_rule_is_quiet_on_near_misses(library: fluo.RuleSet, case: Case) -> None:
    df, _ = table(list(case.near_misses))
    assert fired(library.select([case.rule]), df) == set()


@pytest.mark.parametrize("name", sorted(FLUO_V2_REWRITTEN))
def test_fluos_own_conversion_misbehaves_where_the_library_rewrites(name: str) -> None:
    """Why each rewrite: FLUO's V2 condition, run by fluo, gets these cases wrong."""
    case = CASE[name]
    text = yaml.safe_dump({"rules": {name: {"condition": FLUO_V2_REWRITTEN[name]}}})
    traces = [*case.trips, *case.near_misses]
    df, _ = table(traces)
    got = {trace_id for _, trace_id, _ in fired(fluo.load_rules(text), df)}
    assert got != {f"{n:032x}" for n in range(1, len(case.trips) + 1)}


def test_whole_library_over_every_trace_fires_each_rule_on_its_own_traces(
    library: fluo.RuleSet,
) -> None:
    traces: list[Trace] = []
    owners: list[Case | None] = []
    for case in CASES:
        traces += case.trips
        owners += [case] * len(case.trips)
        traces += case.near_misses
        owners += [None] * len(case.near_misses)
    df, ids = table(traces)
    expected = {
        (case.rule, f"{n:032x}", ids[n - 1][trace.anchor])
        for n, (trace, case) in enumerate(zip(traces, owners, strict=True), 1)
        if case is not None
    }
    got = fired(library, df)
    assert sorted(got - expected) == []  # too broad: fired where it must not
    assert sorted(expected - got) == []  # missed


# --- gaps found on the way ----------------------------------------------------------


def test_fluo_rule_29_as_written_loads() -> None:
    # A string-valued span field named bare inside FLUO's .where and compared with a
    # number is FLUO's attribute of that name (FLUO had no span fields).
    text = (
        "rules:\n  http-500-error-logging:\n    condition: when { http.response.where(status"
        " >= 500) } always { error.logged }\n"
    )
    rules = fluo.load_rules(text)
    df, _ = table([t(root(), s("http.response", status=503))])
    assert len(rules.evaluate(df)) == 1


def test_attribute_to_attribute_comparison_of_numbers_warns() -> None:
    # Two text attributes compare as text ("10000" < "5000", documented); fluo check
    # warns and points to float(), which the library uses.
    text = (
        "rules:\n  queue-depth-overflow:\n    when: span.name == 'queue.depth' and"
        " span.attributes.depth > span.attributes.max_capacity\n"
    )
    rules = fluo.load_rules(text)
    assert any("compares them as text" in n.message for n in rules.notes)
    df, _ = table([t(root(), s("queue.depth", depth=10000, max_capacity=5000))])
    assert rules.evaluate(df).height == 0
    fixed = text.replace(
        "span.attributes.depth > span.attributes.max_capacity",
        "float(span.attributes.depth) > float(span.attributes.max_capacity)",
    )
    assert fluo.load_rules(fixed).evaluate(df).height == 1
