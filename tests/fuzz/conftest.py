"""Hypothesis profiles for the fuzz suite, chosen by HYPOTHESIS_PROFILE.

* ``dev`` (default): quick, for the edit-test loop.
* ``ci``: many more examples, no deadline (the CI machine is shared and
  noisy), and the reproduction blob printed with every failure.
* ``ci-matrix``: as ``ci`` with a fifth of the examples, for the
  interpreters other than the default one in CI (tox.ini), which runs the
  thorough profile once per backend and keeps the whole run under 20
  minutes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from udpio import _addresses

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]

settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=_SLOW_IS_FINE, print_blob=True
)
settings.register_profile(
    "ci", max_examples=500, deadline=None, suppress_health_check=_SLOW_IS_FINE, print_blob=True
)
settings.register_profile(
    "ci-matrix", max_examples=100, deadline=None, suppress_health_check=_SLOW_IS_FINE, print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def numeric_hosts_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fuzzed hosts must never reach a DNS server: only numeric hosts and
    'localhost' (answered from /etc/hosts) resolve."""
    real = socket.getaddrinfo

    def local_only(
        host: Any, port: Any, family: Any = 0, type_: Any = 0, proto: Any = 0, flags: Any = 0
    ) -> Any:
        if host != "localhost":
            flags |= socket.AI_NUMERICHOST
        return real(host, port, family, type_, proto, flags)

    monkeypatch.setattr(_addresses, "_getaddrinfo", local_only)
    yield
