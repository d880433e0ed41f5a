"""jkboards: one pin map per supported board (JSON), shipped with the package.

`load` is the one way in: it reads a board file and checks its pins against the chip
(pins.py), so no caller sees a board the firmware would be wired wrong by.
"""

import json
from pathlib import Path

from .pins import BoardError, problems

__all__ = ["HERE", "BoardError", "load", "names"]

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    """Board names, as used in config.json and scenario files."""
    return sorted(p.stem for p in HERE.glob("*.json"))


def load(name: str) -> dict:
    """The board file `name`, checked.

    FileNotFoundError names the known boards; BoardError (a ValueError) names the
    file and every problem in it: not JSON, not an object, a name that is not the
    file's, a pin the chip cannot use for its role."""
    if name not in names():  # also keeps a name like "../x" inside this folder
        raise FileNotFoundError(f"no board {name!r}; known: {', '.join(names())}")
    p = HERE / f"{name}.json"
    try:
        b = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BoardError(f"board file {p}: not JSON ({e})")
    if not isinstance(b, dict):
        raise BoardError(f"board file {p}: not a JSON object")
    bad = []
    if b.get("name") != name:
        bad.append(f"it calls itself {b.get('name')!r}; the name must be {name!r}")
    if not isinstance(b.get("external_pullups", []), list):
        bad.append("external_pullups must be a list of GPIO numbers")
    else:
        # each of problems() starts with the board's name: the file says it already
        own = f"{b.get('name', '?')}: "
        bad += [s[len(own) :] if s.startswith(own) else s for s in problems(b)]
    if bad:
        raise BoardError(f"board file {p}: " + "; ".join(bad))
    return b
