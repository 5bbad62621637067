"""The benchmark suite: ``python -m tools.bench [--quick] [--only NAME] [--out DIR]``.

Each workload runs against its baseline in the same run, interleaved over several rounds, and is
reported as the median of the per-round ratios (see :mod:`tools.bench.core`). It is not part of the
test run (tests/test_bench_smoke.py only proves that a tiny configuration works).

Groups: ``engine`` (in process, against raw py-lmdb and sqlite3), ``http`` (the server against a
bare Falcon app on waitress, loaded by wrk or the built-in Python generator), ``scale`` (the same
query on a small and a large store) and ``edge`` (memory and start-up time of an idle server).

``python -m tools.bench.platform_probe`` measures, apart from any target, the facts of the
platform that bound the durable-write figures (py-lmdb's GIL release at every call, the cost of
a thread hand-over, Python after a sleep).
"""
