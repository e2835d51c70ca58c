"""The cluster model renders the chart with the chart tests' tools (helm 3)."""

from tests.chart.conftest import chart, tools

__all__ = ["chart", "tools"]
