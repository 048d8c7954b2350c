"""Turning reports into tables and lines for people (the CLI's only job besides parsing options)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from launcher.collect import CollectReport
from launcher.spec import RunSpec

if TYPE_CHECKING:  # not imported for `collect`, whose start-up is part of its benchmarked time
    from rich.table import Table

    from launcher.status import StatusReport

_STATE_STYLE = {"DONE": "green", "RUNNING": "cyan", "PENDING": "dim", "RETRYING": "yellow", "FAILED": "red bold", "CANCELLED": "magenta"}


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def status_table(report: StatusReport, spec: RunSpec) -> Table:
    from rich.table import Table

    t = Table(title=f"run {report.run_id} · {spec.engine}:{spec.model} · backend {spec.backend}", title_justify="left")
    for col, justify in (("chunk", "left"), ("state", "left"), ("records", "right"), ("progress", "right"),
                         ("attempts", "right"), ("preempted", "right"), ("rec/s", "right"), ("ETA", "right"), ("note", "left")):
        t.add_column(col, justify=justify)
    for r in report.rows:
        pct = 100.0 * r.bytes_done / r.bytes_total if r.bytes_total else 100.0
        t.add_row(
            r.chunk,
            f"[{_STATE_STYLE.get(r.state, '')}]{r.state}[/]",
            str(r.records_done),
            f"{pct:5.1f}%",
            str(r.attempts),
            str(r.preemptions),
            f"{r.records_per_s:.1f}" if r.records_per_s else "-",
            human_seconds(r.eta_seconds),
            r.reason,
        )
    tot = report.totals
    pct = 100.0 * tot["bytes_done"] / tot["bytes_total"] if tot["bytes_total"] else 100.0
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(tot["states"].items()))
    t.caption = (
        f"{tot['chunks']} chunks ({states}) · {tot['records_done']} records · {pct:.1f}% of "
        f"{human_bytes(tot['bytes_total'])} · {tot['records_per_s']:.1f} rec/s · ETA {human_seconds(tot['eta_seconds'])}"
        f" · {tot['attempts']} attempts · {tot['preemptions']} preemptions"
    )
    t.caption_justify = "left"
    return t


def collect_summary(console: Console, report: CollectReport, path: str) -> None:
    console.print(
        f"[green]wrote[/] {path}: {report.records} records ({report.ok} ok, {report.errors} errors), "
        f"{report.skipped_blank} blank input lines skipped, {human_bytes(report.bytes)}"
    )
    if report.duplicates_dropped:
        console.print(f"dropped {report.duplicates_dropped} duplicate result(s) committed twice (resumed or zombie attempts)")
    if report.duplicate_custom_ids:
        ex = ", ".join(report.duplicate_examples)
        console.print(
            f"[yellow]warning[/]: {report.duplicate_custom_ids} custom_id(s) appear on more than one input record"
            + (f" (e.g. {ex})" if ex else "") + "; each record was answered separately"
        )
    if report.incomplete_chunks:
        console.print(f"[yellow]partial[/]: {len(report.incomplete_chunks)} chunk(s) incomplete: {', '.join(report.incomplete_chunks[:10])}")
    if report.mismatched_chunks:
        console.print(f"[red]mismatch[/]: output count differs from the done marker in chunk(s) {', '.join(report.mismatched_chunks)}")
