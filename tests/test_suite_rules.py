"""Rules the suite keeps about itself: a test of a promised component fails under CI=true rather
than skipping, so every skip goes through `servers.unavailable` or `servers.require`."""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).parent
SKIPS = re.compile(r"pytest\.(?:skip|importorskip)\s*\(|pytest\.mark\.skip(?:if)?\b|@skip\b")


def test_no_test_skips_except_through_the_servers_helpers():
    offenders = [
        f"{path.name}:{n}"
        for path in sorted(HERE.glob("*.py"))
        if path.name not in ("servers.py", Path(__file__).name)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if SKIPS.search(line)
    ]
    assert not offenders, f"skips that bypass servers.unavailable/require: {offenders}"


def test_the_helpers_fail_under_ci_and_skip_elsewhere(monkeypatch):
    import pytest

    import servers

    monkeypatch.setattr(servers, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        servers.require("curate_no_such_package")
    monkeypatch.setattr(servers, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception):
        servers.require("curate_no_such_package")
    assert servers.require("json").dumps([]) == "[]"
