"""The operator's metrics are documented (issue #17): the README's table lists exactly the series
controller/metrics.py registers, each with its labels."""

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from ferryman.controller import metrics

README = Path(__file__).resolve().parents[2] / "README.md"


def documented() -> dict[str, set[str]]:
    """Metric name (without a counter's `_total`) -> labels, from the README's metrics table."""
    lines = README.read_text().splitlines()
    start = lines.index("| metric | labels | meaning |") + 2
    rows: dict[str, set[str]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        _, names, labels, *_ = line.split("|")
        for name in re.findall(r"`(ferryman_\w+)`", names):
            rows[name.removesuffix("_total")] = set(re.findall(r"`(\w+)`", labels))
    return rows


def test_the_readme_table_lists_every_metric_with_its_labels() -> None:
    registered = {
        metric._name: set(metric._labelnames)
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
    }
    assert registered and documented() == registered
