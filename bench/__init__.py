"""The benchmark: scenarios as data, a runner, a client fleet, an open-loop publisher, raw results, a report.

``python -m bench run --profile quick`` runs every scenario of a profile of ``bench/scenarios.toml`` and writes
raw results under ``results/runs/`` (docs/results.md); ``python -m bench report RUN`` regenerates charts and
REPORT.md from them. Metrics are defined in docs/metrics.md.
"""
