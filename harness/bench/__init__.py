"""``loopcall bench``: calls at rising concurrency, the agent's latency, the harness's health.

``runner.run_bench(config, store, bench_id=...)`` runs the levels and returns a
``BenchReport`` (``models.py``); ``report.write_report`` puts ``report.json`` and
the self-contained ``report.html`` in a directory; ``harness/cli/bench.py`` is the command.
The package's own import is light (the CLI builds its parser from it).
"""
