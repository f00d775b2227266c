"""The minimums in pyproject.toml are the versions a test run installs.

`make test-lowest` installs the package into `.venv-lowest*` with
`uv pip install --resolution lowest-direct` and names, in ``TEST_FLOOR_GROUPS``, the groups
of requirements that venv holds at their minimums (``base`` = the package's own dependencies, else
an extra). There every declared minimum must be exactly the installed version: a minimum the
resolver cannot reach (another package needs more) or cannot import with (a binary built against
a newer NumPy) is a promise that no run tests, and gets raised. The requirements are read from the
installed package's metadata, which the Makefile rebuilds whenever pyproject.toml changes.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, metadata, requires, version

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

_FLOORS_ENV = "TEST_FLOOR_GROUPS"
_SELF = "inspect-otel"


def _requirements(group: str) -> list[Requirement]:
    """The direct requirements of `group` (``base`` or an extra), without the package's own
    extras that `test` pulls in by name."""
    found = []
    for line in requires(_SELF) or ():
        req = Requirement(line)
        if req.name == _SELF:
            continue
        if group == "base" and req.marker is None:
            found.append(req)
        elif group != "base" and req.marker is not None and req.marker.evaluate({"extra": group}):
            found.append(req)
    return found


def _minimum(req: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    return max(bounds) if bounds else None


def _groups() -> list[str]:
    return ["base"] + (metadata(_SELF).get_all("Provides-Extra") or [])


def test_every_direct_requirement_declares_a_minimum():
    groups = _groups()
    assert {"base", "mlflow", "scout", "testing"} <= set(groups), groups
    reqs = [req for group in groups for req in _requirements(group)]
    assert reqs
    unbounded = sorted({str(req) for req in reqs if _minimum(req) is None})
    assert not unbounded, f"requirements without a minimum, which no run can test: {unbounded}"


def test_declared_minimums_are_the_installed_versions():
    floors = os.environ.get(_FLOORS_ENV)
    if not floors:
        pytest.skip(f"not a lowest-direct venv ({_FLOORS_ENV} unset; `make test-lowest` sets it)")
    checked, wrong = [], []
    for group in floors.split(","):
        reqs = _requirements(group)
        assert reqs, f"{_FLOORS_ENV} names {group!r}, which has no requirements"
        for req in reqs:
            try:
                installed = Version(version(req.name))
            except PackageNotFoundError:
                wrong.append(f"{req} ({group}): not installed")
                continue
            checked.append(req.name)
            if installed != _minimum(req):
                wrong.append(f"{req} ({group}): lowest-direct installs {installed}")
    assert checked
    assert not wrong, ("declared minimums that the lowest run does not install; raise them to "
                       "what it installs (and passes with):\n  " + "\n  ".join(wrong))
