"""The API-server stand-in the support tests talk to, one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.apiserver import ApiServer


@pytest.fixture
def server() -> Iterator[ApiServer]:
    s = ApiServer()
    try:
        yield s
    finally:
        s.close()
