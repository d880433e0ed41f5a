"""Every console example in README.md and docs/*.md is run, and its output compared.

A ```console block holds `$ command` lines (a trailing `\\` continues a command), each
followed by the output it prints (standard output and standard error together). In
the expected output:

- `…` (or `...`) inside a line stands for any text on that line;
- a line that is only `…` (or `...`) stands for any number of lines;
- everything else must match exactly (trailing spaces aside).

Commands run with bash in a scratch folder where `docs/` is the repository's docs
(for docs/examples/…); the blocks of one document share that folder, in order, as a
reader would type them. A block preceded by `<!-- doc-test: skip REASON -->` is not
run (REASON says why: it needs a real board, a running server, …). A block preceded
by `<!-- doc-test: vboard [ARGS] -->` runs with the document's virtual board (`jalkal
vboard --fs DIR ARGS`, started once): `/dev/pts/N` in its commands is that board's
port, and in the expected output any `/dev/pts/N` matches it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = re.compile(r"<!--\s*doc-test:\s*skip\s*(.*?)\s*-->")
VBOARD = re.compile(r"<!--\s*doc-test:\s*vboard\s*(.*?)\s*-->")
PTS = re.compile(r"/dev/pts/\d+")
ANY = ("…", "...")


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence
    steps: list[Step]
    skip: str | None  # the reason, when not run
    vboard: str | None = None  # the virtual board's arguments, when it needs one

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    out: list[Block] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        start = i + 1
        before = next((x for x in reversed(lines[:i]) if x.strip()), "")
        m = SKIP.search(before)
        vb = VBOARD.search(before)
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        skip = (m.group(1) or "—") if m else None
        out.append(Block(doc, start, parse(body), skip, vb.group(1) if vb else None))
        i += 1
    return out


def parse(body: list[str]) -> list[Step]:
    steps: list[Step] = []
    cont = False
    for line in body:
        if cont:
            steps[-1].command += "\n" + line
            cont = line.endswith("\\")
        elif line.startswith("$ "):
            steps.append(Step(line[2:]))
            cont = line.endswith("\\")
        elif steps:
            steps[-1].expected.append(line)
    return steps


def _line_pattern(line: str) -> re.Pattern[str]:
    parts = re.split(r"(…|\.\.\.|/dev/pts/\d+)", line.rstrip())
    rx = "".join(
        ".*" if p in ANY else r"/dev/pts/\d+" if PTS.fullmatch(p) else re.escape(p)
        for p in parts
    )
    return re.compile(rx + r"\s*")


def matches(expected: list[str], got: list[str]) -> bool:
    """Whether the output lines `got` fit `expected` (with its wildcards)."""

    def fit(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(got)
        if expected[i].strip() in ANY:
            return any(fit(i + 1, k) for k in range(j, len(got) + 1))
        return (
            j < len(got)
            and _line_pattern(expected[i]).fullmatch(got[j].rstrip()) is not None
            and fit(i + 1, j + 1)
        )

    return fit(0, 0)


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["COLUMNS"] = "80"
    env["NO_COLOR"] = "1"
    env["HOME"] = str(work)
    return env


ALL = [b for d in DOCS for b in blocks(d)]
RUN = [b for b in ALL if b.skip is None]


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """One scratch folder per document, shared by its blocks in order."""
    out = {}
    for doc in DOCS:
        w = tmp_path_factory.mktemp(doc.stem)
        (w / "docs").symlink_to(ROOT / "docs")
        out[doc] = w
    return out


@pytest.fixture(scope="module")
def vboards(request: pytest.FixtureRequest):
    """The documents' virtual boards, started on first use, stopped at the end."""
    running: dict[Path, object] = {}
    yield running
    for vb in running.values():
        vb.stop()  # type: ignore[attr-defined]


def _vboard_port(block: Block, work: Path, vboards: dict, request) -> str:
    if block.doc not in vboards:
        request.getfixturevalue("mpy")  # the WebAssembly MicroPython, or skip/fail
        from test_vboard import VBoard

        # {work}: the document's scratch folder (a file the board keeps, --romfs)
        args = (block.vboard or "").replace("{work}", str(work)).split()
        vboards[block.doc] = VBoard(work / "board-flash", *args)
    return vboards[block.doc].port


def run(command: str, work: Path, timeout: float = 300) -> str:
    """What `command` prints (both streams), in its own process group: a command
    that does not end in time (a server an example should not start) is killed
    with everything it started, and the test fails."""
    proc = subprocess.Popen(
        ["bash", "-c", "exec 2>&1\n" + command],
        cwd=work, env=_env(work), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"`$ {command}` did not end within {timeout:g} s (killed)")
    finally:
        try:  # anything it left running in the background
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return out


@pytest.mark.parametrize("block", RUN, ids=lambda b: b.id)
def test_console_example(
    block: Block, workdirs: dict[Path, Path], vboards: dict, request
) -> None:
    work = workdirs[block.doc]
    if shutil.which("jalkal", path=_env(work)["PATH"]) is None:
        pytest.fail("the jalkal command is not installed (pip install -e .)")
    port = (
        _vboard_port(block, work, vboards, request)
        if block.vboard is not None
        else None
    )
    for step in block.steps:
        command = PTS.sub(port, step.command) if port else step.command
        got = run(command, work).splitlines()
        assert matches(step.expected, got), (
            f"{block.id}: `$ {step.command}` printed:\n"
            + "\n".join(got)
            + "\n--- the document says:\n"
            + "\n".join(step.expected)
        )


def test_a_command_that_does_not_end_is_killed(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="did not end"):
        run("sleep 30 & sleep 30", tmp_path, timeout=0.5)


def test_skipped_examples_say_why() -> None:
    """A skipped block names its reason; nothing else is skipped silently."""
    for b in ALL:
        if b.skip is not None:
            assert b.skip not in ("", "—"), f"{b.id}: doc-test: skip needs a reason"
    assert RUN, "no console example is run"


# --- the matcher itself -------------------------------------------------------------


def test_matcher_wildcards() -> None:
    assert matches(["took … s (…x real time)"], ["took 0.4 s (1,000x real time)"])
    assert not matches(["took 2.1 s"], ["took 0.4 s"])
    assert matches(["a", "…", "z"], ["a", "b", "c", "z"])
    assert matches(["a", "…", "z"], ["a", "z"])
    assert not matches(["a", "z"], ["a", "b", "z"])
    assert not matches(["a"], ["a", "b"])  # an extra line is a change
    assert matches(['{"device":"0a1b2c3d",...}'], ['{"device":"0a1b2c3d","boot":7}'])


def test_a_changed_output_fails(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("```console\n$ echo one\ntwo\n```\n", encoding="utf-8")
    (b,) = blocks(doc)
    r = subprocess.run(
        ["bash", "-c", b.steps[0].command], capture_output=True, text=True
    )
    assert not matches(b.steps[0].expected, r.stdout.splitlines())
    doc.write_text(
        "<!-- doc-test: skip needs a board -->\n```console\n$ jalkal doctor\n```\n",
        encoding="utf-8",
    )
    assert blocks(doc)[0].skip == "needs a board"
