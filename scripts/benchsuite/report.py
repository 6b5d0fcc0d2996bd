"""The run's outputs: results.json (everything, machine-readable), results.md (the tables), ratios.png.

results.json keys: ``schema``, ``run_id`` (in the names of the run's
databases and Redis keys), ``command``, ``scale``, ``sizes``,
``machine`` (at the start) and ``machine_after`` (load and speed at the
end), ``seeding``, ``duration_s``, ``claims`` (one verdict row per seed
claim, in the seed's order), ``rows`` (every other measurement), ``jobs``,
``growth``, ``raw`` (each suite's raw figures) and ``files``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from benchsuite import chart
from benchsuite.rows import SEED_CLAIMS, Row, claim_rows

SCHEMA_VERSION = 1
JSON_NAME, MARKDOWN_NAME, CHART_NAME = "results.json", "results.md", "ratios.png"
REQUIRED_KEYS = ("schema", "run_id", "command", "scale", "sizes", "machine", "machine_after", "seeding", "duration_s",
                 "claims", "rows", "jobs", "growth", "raw", "files")


@dataclasses.dataclass
class Results:
    """Everything one run measured.

    Parameters:
      run_id(str): This run's id (its databases are crmtasks_bench_<run_id>...).
      command(str): The command line, as typed.
      scale(str): small, medium or large.
      sizes(dict): Rows per table and audit rows.
      machine(dict): benchsuite.machine.describe() at the start.
      machine_after(dict): Load and speed at the end.
      seeding(dict): Seconds and rows of the main dataset's seed.
      duration_s(float): Wall-clock seconds of the whole run.
      rows(list[Row]): Every row of every suite, verdicts on the seed's claims included.
      jobs(list[dict]): The jobs suite's results.
      growth(list[dict]): The growth suite's results.
      raw(dict): Each suite's raw figures, by suite.
    """

    run_id: str
    command: str
    scale: str
    sizes: dict
    machine: dict
    machine_after: dict
    seeding: dict
    duration_s: float
    rows: list[Row]
    jobs: list[dict]
    growth: list[dict]
    raw: dict

    def as_dict(self) -> dict:
        return {
            "schema": SCHEMA_VERSION, "run_id": self.run_id, "command": self.command, "scale": self.scale, "sizes": self.sizes,
            "machine": self.machine, "machine_after": self.machine_after, "seeding": self.seeding,
            "duration_s": round(self.duration_s, 1),
            "claims": [row.as_dict() for row in claim_rows(self.rows)],
            "rows": [row.as_dict() for row in self.rows if row.claim is None],
            "jobs": self.jobs, "growth": self.growth, "raw": self.raw,
            "files": {"markdown": MARKDOWN_NAME, "chart": CHART_NAME},
        }


def write(results: Results, out: Path) -> dict[str, Path]:
    """Write the three files into ``out`` (created if needed); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / JSON_NAME, "markdown": out / MARKDOWN_NAME, "chart": out / CHART_NAME}
    paths["json"].write_text(json.dumps(results.as_dict(), indent=2, default=str) + "\n")
    paths["markdown"].write_text(markdown(results))
    chart.draw(claim_rows(results.rows) + [row for row in results.rows if row.claim is None], paths["chart"],
               f"crmtasks benchmark, scale {results.scale}, {results.machine['date']}: ours / baseline")
    return paths


# --------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------


def markdown(results: Results) -> str:
    """results.md: the header (command, machine, data), then the claims, every row, the jobs and the growth."""
    parts = [_header(results), "## The seed's claims\n",
             _table(["Claim in the seed", "Measured as", "Baseline", "Ours", "Ratio", "Target", "Met"],
                    [[SEED_CLAIMS[row.claim], row.metric, _value(row.baseline, row.unit),
                      _value(row.ours, row.unit), _ratio(row.ratio), row.target or "-", _met(row.met)]
                     for row in claim_rows(results.rows)]),
             ("\nRatio = ours / baseline: lower is better. Details of each verdict are in the rows below and in "
             f"results.json; the chart of every ratio is {CHART_NAME}.\n"),
             "## Every measurement\n",
             _table(["Suite", "Metric", "Baseline", "Ours", "Ratio", "Target", "Met", "Detail"],
                    [[row.suite, row.metric, _value(row.baseline, row.unit), _value(row.ours, row.unit),
                      _ratio(row.ratio), row.target or "-", _met(row.met), row.detail]
                     for row in results.rows if row.claim is None])]
    if results.raw.get("load"):
        parts += ["\n## Under load\n", _load_table(results.raw["load"])]
    if results.jobs:
        parts += ["\n## Each job at this scale\n", _jobs_table(results.jobs)]
    if results.growth:
        parts += ["\n## How cost grows\n", _growth_table(results.growth), _growth_summary(results.growth)]
    return "\n".join(parts) + "\n"


def _header(results: Results) -> str:
    machine, after = results.machine, results.machine_after
    pg = machine.get("postgresql", {})
    seeded = results.seeding.get("seconds", {})
    load = machine.get("load_average_1_5_15") or ["?"]
    load_after = after.get("load_average_1_5_15") or ["?"]
    return "\n".join([
        f"# crmtasks performance, scale `{results.scale}`\n",
        f"- Command: `{results.command}`",
        f"- Run: {machine['date']}, {results.duration_s:.0f} s in all; commit {machine.get('commit') or 'unknown'}",
        (f"- Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB RAM, {machine['os']}; "
        f"Python {machine['python']}; PostgreSQL {pg.get('server_version', '?')} (shared_buffers "
        f"{pg.get('shared_buffers', '?')}, work_mem {pg.get('work_mem', '?')}, parallel workers per gather "
        f"{pg.get('max_parallel_workers_per_gather', '?')})"),
        (f"- Quiet? load average (1 min) {load[0]} at the start, {load_after[0]} at the end; speed check "
        f"(`SELECT count(*) FROM generate_series(1, 1000000)`) {machine['calibration_ms']} ms at the start, "
        f"{after.get('calibration_ms')} ms at the end (about 60 ms on an idle core: more means a busy machine "
        "and inflated timings)"),
        (f"- Data: {results.sizes['description']}; seeded in {sum(seeded.values()):.0f} s "
        f"({', '.join(f'{step} {seconds:.1f}' for step, seconds in seeded.items())}"
        f"{_phases(results.seeding.get('crm_phases_s'))})\n"),
    ])


def _phases(phases: dict | None) -> str:
    """The CRM load's phases, e.g. "; CRM: people 0.1, records 60.2, indexes 190.0 ..." (seconds)."""
    if not phases:
        return ""
    return "; CRM: " + ", ".join(f"{phase} {seconds:.1f}" for phase, seconds in phases.items())


def _jobs_table(jobs: list[dict]) -> str:
    return _table(
        ["Job", "Status", "Duration", "Peak memory (job's process)", "Before the job", "PostgreSQL temp files",
         "What it did"],
        [[job["task"], job["status"], f"{job['duration_s']:.2f} s", f"{job['rss_peak_mb']:.0f} MiB",
          f"{job['rss_before_job_mb']:.0f} MiB", _bytes(job["temp_bytes"]), job["summary"] or ""] for job in jobs]) + (
        "\n\nEach job ran once through `crmtasks.runs.runner.run_now` in a fresh process after the other suites and "
        "after 1% of deals changed (a scheduled run in steady state; audit maintenance archives the seeded months "
        "past 12 months of retention); \"before the job\" is that process's memory with crmtasks imported.\n")


def _load_table(load: dict) -> str:
    """Throughput and latency per call and concurrency, pooled (ours) beside a connection per thread."""
    by_key = {(cell["call"], cell["mode"], cell["side"]): cell for cell in load["cells"]}
    keys = list(dict.fromkeys((cell["call"], cell["mode"]) for cell in load["cells"]))

    def side(cell: dict) -> list[str]:
        return [f"{cell['calls_per_s']:,.0f}", _ms_or_dash(cell["p50_ms"]), _ms_or_dash(cell["p99_ms"]),
                f"{cell['errors']:,}"]

    table = _table(["Call", "Callers", "Pooled: calls/s", "p50", "p99", "errors", "Connection per thread: calls/s",
                    "p50", "p99", "errors"],
                   [[call, _callers(mode, by_key[(call, mode, "ours")]), *side(by_key[(call, mode, "ours")]),
                     *side(by_key[(call, mode, "baseline")])] for call, mode in keys])
    notes = [f"\nPooled: the call as a library user makes it, on a connection borrowed from the process's pool of "
             f"{load['pool_size']} (CRMTASKS_DB_POOL_SIZE; callers beyond it wait their turn, up to "
             f"{load['pool_timeout_s']:g} s). Connection per thread: the same call given `connection=` a psycopg2 "
             f"connection the thread opened for itself. {load['seconds_per_cell']:g} s per cell, every thread calling "
             "again as soon as its call returns (a closed loop: with more threads than cores, a call's time includes "
             "its wait for a CPU); \"paced\": calls start on a schedule, at half the 8-thread throughput, as "
             "requests reach a web server, timed from their scheduled start."]
    jobs = load.get("jobs")
    if jobs:
        notes.append(f"\n{jobs['messages']:,} run-now messages for {jobs['job']} sent at once ({jobs['send_s']:.2f} s) "
                     f"to {jobs['workers']}: {jobs['recorded']:,} recorded ({jobs['ran']} ran, {jobs['skipped']:,} "
                     f"skipped as overlap, at most {jobs['most_at_once']} at once), drained in {jobs['drain_s']:.1f} s.")
    return table + "\n" + "\n".join(notes) + "\n"


def _callers(mode: str, cell: dict) -> str:
    return f"{mode} at {cell['rate']:,.0f} calls/s" if cell.get("rate") else mode


def _ms_or_dash(value: float | None) -> str:
    return "-" if value is None else f"{_number(value)} ms"


def _growth_table(growth: list[dict]) -> str:
    return _table(
        ["Leads", "Rows counted (4 tables)", "Facets, 1st run", "Facets, steady", "per 100k rows",
         "Aggregates rebuild", "per 100k rows", "Archived rows", "Archive step", "per 100k rows", "Peak memory",
         "PostgreSQL temp files"],
        [[f"{size['leads']:,}" + (" (main dataset)" if size.get("on_main") else ""), f"{size['facets_rows']:,}", f"{size['facets_first_s']:.2f} s",
          f"{size['facets_s']:.2f} s", _seconds(size["facets_s_per_100k"]), f"{size['aggregates_s']:.2f} s",
          _seconds(size["aggregates_s_per_100k"]), f"{size['archive_rows']:,}", _seconds(size["archive_s"]),
          _seconds(size["archive_s_per_100k"]), f"{size['rss_peak_mb']:.0f} MiB", _bytes(size["temp_bytes"])]
         for size in growth])


def _growth_summary(growth: list[dict]) -> str:
    first, last = growth[0], growth[-1]

    def times(key: str) -> str:
        if not first.get(key) or last.get(key) is None:
            return "?"
        return f"x{last[key] / first[key]:.1f}"

    return (f"\nFrom the smallest to the largest size: rows x{last['facets_rows'] / max(1, first['facets_rows']):.1f}; "
            f"time: facets {times('facets_s')}, aggregates rebuild {times('aggregates_s')}, archive "
            f"{times('archive_s')} (x{last['archive_rows'] / max(1, first['archive_rows']):.1f} rows); peak memory "
            f"{first['rss_peak_mb']:.0f} -> {last['rss_peak_mb']:.0f} MiB. Constant seconds per 100k rows mean linear "
            "growth; at small sizes fixed costs (planning, transactions, fsync) dominate them.\n")


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    return ("" if value is None else str(value)).replace("|", "\\|").replace("\n", " ")


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("rows/s", "calls/s"):
        return f"{value:,.0f} {unit}"
    if unit == "bytes/row":
        return f"{value:,.1f} B/row"
    if unit in ("count", "rows"):
        return f"{value:,.0f}"
    return f"{_number(value)} {unit}"


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    if ratio < 1:
        return f"{ratio:.3f} ({1 - ratio:.1%} less)"
    return f"{ratio:.2f}x"


def _met(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**NO**")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 2**20:.1f} MiB"
