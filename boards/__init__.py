"""jkboards: one pin map per supported board (JSON), shipped with the package."""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    """Board names, as used in config.json and scenario files."""
    return sorted(p.stem for p in HERE.glob("*.json"))


def load(name: str) -> dict:
    """The board file `name`; FileNotFoundError naming the known boards."""
    p = HERE / f"{name}.json"
    if not p.exists():
        raise FileNotFoundError(f"no board {name!r}; known: {', '.join(names())}")
    return json.loads(p.read_text())
