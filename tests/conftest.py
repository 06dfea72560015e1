from __future__ import annotations

import pytest

from tests.helpers import has_ipv6


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if has_ipv6():
        return
    skip = pytest.mark.skip(reason="no IPv6 loopback on this machine")
    for item in items:
        if "ipv6" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["127.0.0.1", pytest.param("::1", marks=pytest.mark.ipv6)], ids=["ipv4", "ipv6"])
def loopback(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs once on IPv4 and once on IPv6 loopback."""
    host: str = request.param
    return host
