"""What the audit reports: a finding per problem, and the report printed from them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]


SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


MIGRATE = "run `relay-peewee migrate`"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    table: str
    check: str  # a stable name, e.g. "tenant-index", for tests and scripts
    message: str  # one line: what is wrong, then "; fix: ..."


def count_by_severity(findings: Iterable[Finding]) -> dict[str, int]:
    counts = Counter(f.severity for f in findings)
    return {s: counts[s] for s in SEVERITIES}


def report(findings: list[Finding], *, as_json: bool = False) -> str:
    """The findings as an aligned table and a summary line, or as JSON."""
    counts = count_by_severity(findings)
    if as_json:
        return json.dumps({"findings": [asdict(f) for f in findings], "summary": counts}, indent=2)
    rows = [("SEVERITY", "TABLE", "CHECK", "MESSAGE")]
    rows += [(f.severity, f.table, f.check, f.message) for f in findings]
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"{sev:<{width[0]}}  {table:<{width[1]}}  {check:<{width[2]}}  {message}"
        for sev, table, check, message in rows
    ]
    plural = {"error": "errors", "warning": "warnings", "info": "info"}
    summary = ", ".join(f"{n} {s if n == 1 else plural[s]}" for s, n in counts.items())
    return "\n".join([*lines, summary] if findings else [summary])
