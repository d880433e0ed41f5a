"""Dependencies are bounded, and the versions CI installs (constraints.txt) are ones
the bounds allow: a fresh machine gets what was tested."""

from __future__ import annotations

from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def pins() -> dict[str, Version]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = Version(version)
    return out


def test_every_dependency_has_an_upper_bound():
    for r in declared():
        if r.name == "wheel":
            continue
        assert any(s.operator in ("<", "<=", "~=", "==") for s in r.specifier), r


def test_the_pinned_versions_are_inside_the_bounds():
    pinned = pins()
    for r in declared():
        v = pinned.get(canonicalize_name(r.name))
        assert v is not None, f"{r.name} is not pinned in constraints.txt"
        assert r.specifier.contains(v, prereleases=True), (r, v)


def test_the_install_step_uses_the_constraints():
    assert "-c constraints.txt" in (ROOT / ".ci" / "install.sh").read_text()
