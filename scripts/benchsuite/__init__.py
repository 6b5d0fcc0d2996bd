"""The pieces of ``scripts/bench``: one module per benchmark suite, plus the dataset, the rows and the report.

Not part of the installed ``crmtasks`` package: ``scripts/bench`` (and the
older per-issue ``scripts/bench_*.py``) put ``scripts/`` on ``sys.path`` and
import ``benchsuite`` from there.

- ``dataset``: the scales, the benchmark database (created, migrated, seeded,
  dropped) and the settings pointing crmtasks at it.
- ``search``, ``reports``, ``sharing``, ``audit``: baseline versus ours, one
  suite per seed claim, each returning ``rows.Row`` objects.
- ``load``: the library API from 1, 8 and 40 threads and 4 processes, pooled versus a
  connection per thread; ``load_jobs``: 1,000 run-now messages sent at once to real workers.
- ``jobs``: every registered job's duration and peak memory at the scale.
- ``growth``: precompute and archive time at three sizes.
- ``processes``: running a function in a fresh child process and measuring its peak memory.
- ``timing``: percentiles and interleaved timing.
- ``rows``: what a result row is and how rows become one verdict per seed claim.
- ``machine``, ``report``, ``chart``: results.json, results.md, ratios.png.
"""
