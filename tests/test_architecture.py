"""The house rules of docs/architecture.md, checked on the code as it is, and each
check shown to catch a violation planted in a copy of the sources.

- import-linter's contracts (pyproject.toml [tool.importlinter]): protocol and boards
  import nothing of ours, firmware only the protocol, the simulator never the host;
  inside the host: cli, then the wings (independent), then decode, then the base;
- no import circle among all our modules (function-level imports included);
- no `_private` name imported or reached across modules;
- click only in the command modules (cli.py and each wing's command.py);
- no host module over ~500 lines;
- `jalkal --help` reads a table: fast, and without numpy, pyarrow or any wing.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> installed name (pyproject.toml [tool.setuptools] package-dir)
PACKAGES = {
    "protocol": "jkproto",
    "firmware": "jkfw",
    "sim": "jksim",
    "boards": "jkboards",
    "host": "jalkal",
}
VENDORED = ("sim/vboard/asyncio", "sim/wasm")  # third-party code, kept verbatim
MAX_LINES = 540  # "about 500": a module past this wants splitting
COMMAND_MODULES = {"jalkal.cli"}  # and every jalkal.<wing>.command


# --- the sources ------------------------------------------------------------------


def sources(root: Path = ROOT) -> Iterator[tuple[str, Path]]:
    """(dotted module name, file) of every module of ours under root."""
    for folder, pkg in PACKAGES.items():
        base = root / folder
        for f in sorted(base.rglob("*.py")):
            rel = f.relative_to(root).as_posix()
            if any(rel.startswith(v + "/") for v in VENDORED):
                continue
            parts = [pkg, *f.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), f


def _resolve(module: str, is_pkg: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` in module."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the modules of ours it imports (anywhere in it, functions too)."""
    mods = dict(sources(root))
    known = set(mods)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for mod, f in mods.items():
        is_pkg = f.name == "__init__.py"
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node.level, node.module)
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                # the deepest module of ours the name is (or is inside of)
                while t and t not in known:
                    t = t.rpartition(".")[0]
                if t and t != mod and not mod.startswith(t + "."):
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def private_crossings(root: Path = ROOT) -> list[str]:
    """`from ours import _name` and `ours_module._name` in another module of ours.
    A module's own private names, and dunder names, are fine."""
    mods = dict(sources(root))
    known = set(mods)
    found = []
    for mod, f in mods.items():
        is_pkg = f.name == "__init__.py"
        tree = ast.parse(f.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}  # local name -> module of ours
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in known:
                        aliases[a.asname or a.name.split(".")[0]] = (
                            a.name if a.asname else a.name.split(".")[0]
                        )
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node.level, node.module)
                if base.split(".")[0] not in PACKAGES.values():
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in known:
                        aliases[a.asname or a.name] = sub
                    elif _private(a.name) and base != mod:
                        found.append(f"{f.relative_to(root)}:{node.lineno}: "
                                     f"from {base} import {a.name}")  # fmt: skip
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _private(node.attr)
                and aliases[node.value.id] != mod
            ):
                found.append(
                    f"{f.relative_to(root)}:{node.lineno}: {node.value.id}.{node.attr}"
                )
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_command_module(mod: str) -> bool:
    return mod in COMMAND_MODULES or (
        mod.startswith("jalkal.") and mod.endswith(".command")
    )


def click_outside_commands(root: Path = ROOT) -> list[str]:
    found = []
    for mod, f in sources(root):
        if not mod.startswith("jalkal") or is_command_module(mod):
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            if any(n == "click" or n.startswith("click.") for n in names):
                found.append(f"{f.relative_to(root)}:{node.lineno}")
    return found


def long_modules(root: Path = ROOT, limit: int = MAX_LINES) -> list[str]:
    return [
        f"{f.relative_to(root)}: {n} lines"
        for mod, f in sources(root)
        if mod.startswith("jalkal")
        and (n := len(f.read_text(encoding="utf-8").splitlines())) > limit
    ]


def copy_sources(dst: Path) -> Path:
    """Our Python sources (and the import-linter config) in a scratch tree laid out
    by installed name, importable with PYTHONPATH=dst/src."""
    src = dst / "src"
    for _mod, f in sources():
        rel = f.relative_to(ROOT)
        out = src / PACKAGES[rel.parts[0]] / Path(*rel.parts[1:])
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, out)
    shutil.copyfile(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return src


def lint_imports(
    cwd: Path, pythonpath: Path | None = None
) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports")
    assert exe, "import-linter is not installed (pip install -e '.[dev]')"
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [exe, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


# --- the rules hold ---------------------------------------------------------------


def test_import_linter_contracts_hold():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_no_import_circle_anywhere():
    assert cycles(imports()) == []


def test_no_private_name_crosses_a_module():
    assert private_crossings() == []


def test_click_only_in_command_modules():
    assert click_outside_commands() == []


def test_no_host_module_is_long():
    assert long_modules() == []


def test_help_is_fast_and_loads_no_wing():
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from jalkal.cli import main\n"
        "sys.stdout = open('/dev/null', 'w')\n"
        "rc = main(['--help'])\n"
        "took = time.perf_counter() - t\n"
        "sys.stdout = sys.__stdout__\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'pyarrow', 'duckdb', 'matplotlib')"
        " or m.startswith(('jalkal.decode', 'jalkal.ingest', 'jalkal.reports', "
        "'jalkal.field', 'jalkal.virtual')))\n"
        "print(rc, took, heavy)\n"
    )
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        wall = time.perf_counter() - t0
        assert out.returncode == 0, out.stderr
        rc, took, heavy = out.stdout.split(" ", 2)
        assert rc == "0" and heavy.strip() == "[]", out.stdout
        runs.append((float(took), wall))
    best_import, best_wall = min(r[0] for r in runs), min(r[1] for r in runs)
    # jalkal's own part of `jalkal --help` (import and run): the interpreter's
    # start-up is the same for any program
    assert best_import <= 0.2, f"{best_import:.3f} s (process {best_wall:.3f} s)"


def test_help_lists_every_command_with_its_own_words():
    """The table's sentence for each command is the command's help (so the lazy
    listing cannot drift from the commands)."""
    from jalkal.cli import COMMANDS, load_command

    for name, (_m, _a, text) in COMMANDS.items():
        cmd = load_command(name)
        assert cmd.name == name
        assert cmd.get_short_help_str(limit=10_000) == text


# --- each rule catches a planted violation -----------------------------------------


def _plant(src: Path, rel: str, line: str) -> None:
    f = src / rel
    f.write_text(f.read_text(encoding="utf-8") + "\n" + line + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    "rel, line, contract",
    [
        ("jalkal/reports/daily.py", "import jalkal.cli", "host: cli, then the wings"),
        ("jalkal/field/pull.py", "from jalkal.reports import plots",
         "host: cli, then the wings"),
        ("jalkal/decode/bulk.py", "from jalkal.ingest import store",
         "host: cli, then the wings"),
        ("jkfw/app.py", "import jksim", "firmware imports only the protocol"),
        ("jkproto/codec.py", "import jkfw", "protocol imports nothing of ours"),
        ("jksim/plant.py", "import jalkal", "the simulator never imports the host"),
    ],
)  # fmt: skip
def test_import_linter_catches_a_planted_import(tmp_path, rel, line, contract):
    src = copy_sources(tmp_path)
    assert lint_imports(tmp_path, src).returncode == 0  # the copy is clean
    _plant(src, rel, line)
    r = lint_imports(tmp_path, src)
    assert r.returncode != 0
    assert f"{contract}" in r.stdout and "BROKEN" in r.stdout, r.stdout


def test_a_planted_circle_is_found(tmp_path):
    src = copy_sources(tmp_path)
    # bulk imports locate; a function-level import back makes the two a circle
    _plant(src, "jalkal/decode/locate.py", "def f():\n    from .bulk import decode")
    found = cycles(imports(_as_root(src)))
    assert ["jalkal.decode.bulk", "jalkal.decode.locate"] in found


def test_a_planted_private_crossing_is_found(tmp_path):
    src = copy_sources(tmp_path)
    _plant(src, "jalkal/reports/periods.py", "from .daily import _device_days")
    _plant(src, "jalkal/reports/alerts.py", "x = daily_bulk._by_device")
    _plant(src, "jalkal/reports/alerts.py", "from . import daily_bulk")
    found = private_crossings(_as_root(src))
    assert any("import _device_days" in x for x in found), found
    assert any("daily_bulk._by_device" in x for x in found), found


def test_planted_click_and_a_long_module_are_found(tmp_path):
    src = copy_sources(tmp_path)
    _plant(src, "jalkal/field/board.py", "import click")
    _plant(src, "jalkal/registry.py", "\n" * MAX_LINES)
    root = _as_root(src)
    assert [x.split(":")[0] for x in click_outside_commands(root)] == [
        "host/field/board.py"
    ]
    assert [x.split(":")[0] for x in long_modules(root)] == ["host/registry.py"]


def _as_root(src: Path) -> Path:
    """The scratch tree under folder names again (the checks read folders)."""
    root = src.parent / "tree"
    for folder, pkg in PACKAGES.items():
        shutil.copytree(src / pkg, root / folder)
    return root
