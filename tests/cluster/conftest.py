"""The cluster model renders the chart with the chart tests' tools (helm 3), and runs the
images we build (tests/cluster/images.py): built and extracted once, before any pod."""

from collections.abc import Iterator

import pytest

from tests.chart.conftest import chart, tools
from tests.cluster import images

__all__ = ["chart", "tools"]


@pytest.fixture(scope="session", autouse=True)
def cluster_images() -> Iterator[None]:
    """Before the first pod waits on one: a cold build or extraction takes minutes, which
    the scenarios' settle timeouts would count."""
    took = images.prepare()
    print(f"cluster model images ready: {took} (s)")
    yield
