"""The firmware uses only what MicroPython on the ESP32 has.

Three nets, each checked against the real thing rather than a hand-kept list:
- every module the firmware imports is either one the ESP32 port provides (its
  stubs) or one that real MicroPython imports (the WebAssembly build);
- no attribute the firmware uses is a method that CPython's built-in types have and
  MicroPython's lack (the difference is read from both interpreters at test time);
- the firmware runs a simulated day in real MicroPython (tests/test_app_micropython.py)
  and type-checks against the ESP32 stubs (tests/test_firmware_types.py).

The negative cases plant each kind of CPython-only code in a copy of the firmware and
show that a check fails."""

import ast
import json
import os

import pytest
from conftest import REPO

STUBS = REPO / "build" / "mpy-stubs"
TYPES = "str bytes bytearray int float list dict tuple set frozenset memoryview object"


def firmware_sources() -> dict[str, str]:
    src = {f"jkfw/{p.name}": p.read_text() for p in (REPO / "firmware").glob("*.py")}
    src["jkproto/codec.py"] = (REPO / "protocol" / "codec.py").read_text()
    return src


def imported_modules(sources: dict[str, str]) -> set[str]:
    mods = set()
    for text in sources.values():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                mods.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                mods.add(node.module.split(".")[0])
    return mods - {"jkfw", "jkproto"}


def used_attributes(sources: dict[str, str]) -> dict[str, str]:
    """attribute name -> the first file using it, minus names the firmware defines."""
    used: dict[str, str] = {}
    defined: set[str] = set()
    for name, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute):
                if isinstance(node.ctx, ast.Store):
                    defined.add(node.attr)
                else:
                    used.setdefault(node.attr, name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defined.add(node.name)
    return {a: f for a, f in used.items() if a not in defined}


@pytest.fixture(scope="module")
def esp32_modules() -> set[str]:
    if not (STUBS / "machine.pyi").exists():
        msg = "MicroPython stubs missing: run bash .ci/install.sh"
        if os.environ.get("JALKAL_REQUIRE_MICROPYTHON"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    mods = {p.stem for p in STUBS.glob("*.pyi")}
    mods |= {
        p.name for p in STUBS.iterdir() if p.is_dir() and (p / "__init__.pyi").exists()
    }
    return mods


@pytest.fixture(scope="module")
def micropython_only_lacks(request) -> set[str]:
    """Methods CPython's built-in types have and real MicroPython's do not."""
    mpy = request.getfixturevalue("mpy")
    script = (
        "import json\nprint(json.dumps(sorted({a for t in (%s) for a in dir(t)})))"
        % (", ".join(TYPES.split()))
    )
    mp = set(json.loads(mpy.run(script)))
    cp = {a for t in TYPES.split() for a in dir(eval(t))}
    return {a for a in cp - mp if not a.startswith("_")}


def missing_modules(sources, esp32_modules) -> list[str]:
    """Imports the ESP32 port does not provide (under its name or its u-name)."""
    return sorted(
        m
        for m in imported_modules(sources)
        if m not in esp32_modules and "u" + m not in esp32_modules
    )


def cpython_only_calls(sources, lacks) -> dict[str, str]:
    return {a: f for a, f in used_attributes(sources).items() if a in lacks}


# --- the firmware as it is


@pytest.mark.micropython
def test_every_import_exists_on_the_board(mpy, esp32_modules):
    mods = imported_modules(firmware_sources())
    assert {"machine", "struct", "asyncio"} <= mods  # the scan sees imports
    assert missing_modules(firmware_sources(), esp32_modules) == []
    # and the ones that are not hardware import in real MicroPython (its WebAssembly
    # build has more of micropython-lib than an ESP32, so the stubs decide above)
    # (onewire and ds18x20 are the ESP32 port's 1-Wire drivers: hardware too, and
    # imported only when a DS18B20 is configured)
    soft = sorted(mods - {"machine", "onewire", "ds18x20"})
    assert mpy.run("for m in %r:\n    __import__(m)\nprint('ok')" % soft) == "ok\n"


@pytest.mark.micropython
def test_no_method_that_only_cpython_has(micropython_only_lacks):
    # the comparison is real: MicroPython lacks some of CPython's str/int methods
    assert {"removeprefix", "casefold", "bit_count"} <= micropython_only_lacks
    assert cpython_only_calls(firmware_sources(), micropython_only_lacks) == {}


# --- CPython-only code planted in a copy of the firmware


def planted(module: str, code: str, where: str = "end") -> dict[str, str]:
    src = firmware_sources()
    text = src[module]
    if where == "top":
        src[module] = code + "\n" + text
    else:
        src[module] = text + "\n\ndef _planted(x):\n    " + code + "\n"
    return src


@pytest.mark.micropython
@pytest.mark.parametrize(
    "module, code",
    [
        ("jkfw/pump.py", "import dataclasses"),
        ("jkfw/app.py", "from typing import Optional"),
        ("jkfw/logger.py", "import enum"),
        ("jkproto/codec.py", "import contextlib"),
    ],
)
def test_an_import_the_board_lacks_fails(mpy, esp32_modules, module, code):
    src = planted(module, code, "top")
    assert missing_modules(src, esp32_modules) == [code.split()[1]]
    # and the module itself no longer imports in real MicroPython
    files = {k: v.encode() for k, v in src.items()}
    files.update({"jkfw/__init__.py": b"", "jkproto/__init__.py": b""})
    files.update(
        {
            f"jkfw/{p.name}": p.read_bytes()
            for p in (REPO / "firmware").glob("__init__.py")
        }
    )
    name = module[:-3].replace("/", ".")
    with pytest.raises(Exception, match="ImportError"):
        mpy.run("import %s" % name, files)


@pytest.mark.micropython
@pytest.mark.parametrize(
    "module, code",
    [
        ("jkfw/app.py", "return x.removeprefix('jk')"),
        ("jkfw/meter.py", "return x.bit_count()"),
        ("jkfw/display.py", "return x.casefold()"),
        ("jkproto/codec.py", "return x.removesuffix(b'\\x00')"),
    ],
)
def test_a_method_micropython_lacks_fails(micropython_only_lacks, module, code):
    bad = cpython_only_calls(planted(module, code), micropython_only_lacks)
    assert list(bad.values()) == [module]


@pytest.mark.micropython
def test_fstring_debug_specifier_is_micropython_too(mpy):
    # f"{x=}" is listed as CPython-only in older notes; the pinned MicroPython (1.27)
    # has it, so the firmware may use it and no check rejects it
    assert mpy.run("x = 1\nprint(f'{x=}')") == "x=1\n"
