"""The codes firmware/app.py writes into frames are the codes protocol/objects.py
decodes them by: events, reasons and pump states, names and numbers both ways (the
frame kinds app.py takes from protocol/codec.py). The board keeps its own copies
(it does not load objects.py); a mismatch would log frames the host names wrongly,
and nothing else would notice."""

import ast

import pytest
from conftest import REPO

from jkfw import app
from jkproto import codec
from jkproto import objects as ob

TABLES = (  # app.py's table, objects.py's names (index = code), what it is
    ("EVENT_CODES", "EVENTS", "event"),
    ("REASON_CODES", "REASONS", "reason"),
    ("STATE_CODES", "STATES", "state"),
)
KINDS = ("BOOT", "READING", "EVENT", "HEARTBEAT", "GAP", "CLOCK", "MEASURE")


def table_differences(what: str, codes: dict, names: tuple) -> list[str]:
    """How the board's {name: code} differs from the host's names by code."""
    host = {n: i for i, n in enumerate(names) if n}
    out = []
    for n in sorted(set(codes) | set(host)):
        board, known = codes.get(n), host.get(n)
        if board == known:
            continue
        if known is None:
            out.append(f"{what} {n!r}: code {board} on the board, unknown to the host")
        elif board is None:
            out.append(f"{what} {n!r}: code {known} on the host, not on the board")
        else:
            out.append(f"{what} {n!r}: code {board} on the board, {known} on the host")
    return out


def code_differences(app_mod=app, objects_mod=ob, codec_mod=codec) -> list[str]:
    """Every way the codes in firmware/app.py differ from protocol/objects.py's (and a
    frame kind app.py would define from protocol/codec.py's); [] when they agree."""
    out = []
    for mine, theirs, what in TABLES:
        out += table_differences(
            what, getattr(app_mod, mine), getattr(objects_mod, theirs)
        )
    # app.py writes codec.BOOT, codec.READING...; a copy of its own must agree
    for k in KINDS:
        v, want = getattr(app_mod, k, None), getattr(codec_mod, k)
        if v is not None and v != want:
            out.append(f"kind {k}: {v} in app, {want} in codec")
        if objects_mod.KINDS[want] != k.lower():
            out.append(f"kind {k}: {want} in codec, {objects_mod.KINDS[want]!r} there")
    return out


def test_the_board_codes_are_the_host_codes():
    assert code_differences() == []


def test_the_kinds_cover_every_kind_the_host_knows():
    assert [getattr(codec, k) for k in KINDS] == list(range(1, len(ob.KINDS)))


@pytest.mark.parametrize(
    "plant, want",
    [
        (("EVENT_CODES", "pump_start", 2), "event 'pump_start': code 2 on the board"),
        (("REASON_CODES", "dry_run", 99), "reason 'dry_run': code 99 on the board, 4"),
        (("STATE_CODES", "lockout", 4), "state 'lockout': code 4 on the board, 3"),
        (("REASON_CODES", "dry_runn", 4), "reason 'dry_runn': code 4 on the board, "
                                          "unknown to the host"),
        (("EVENT_CODES", "sms_command", None), "event 'sms_command': code 9 on the "
                                               "host, not on the board"),
    ],
)  # fmt: skip
def test_a_planted_mismatch_is_reported(monkeypatch, plant, want):
    table, name, code = plant
    if code is None:
        monkeypatch.delitem(getattr(app, table), name)
    else:
        monkeypatch.setitem(getattr(app, table), name, code)
    diff = code_differences()
    assert len(diff) == 1 and diff[0].startswith(want), diff


def test_a_planted_host_name_is_reported(monkeypatch):
    monkeypatch.setattr(ob, "STATES", ob.STATES + ("paused",))
    assert code_differences() == [
        "state 'paused': code 6 on the host, not on the board"
    ]


def test_a_planted_kind_is_reported(monkeypatch):
    monkeypatch.setattr(app, "GAP", 7, raising=False)
    assert code_differences() == ["kind GAP: 7 in app, 5 in codec"]


# --- the names the firmware passes to Controller.event are in the tables: an unknown
# event raises KeyError on the board, an unknown reason is logged as "none"


def event_calls() -> list[tuple[str, int, str, str | None]]:
    """(file, line, event, reason) of every event(...) call in the firmware whose
    event is a literal (the reason when it is one too)."""
    out = []
    for path in sorted((REPO / "firmware").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and len(node.args) >= 2):
                continue
            f = node.func
            if not (isinstance(f, ast.Attribute) and f.attr == "event"):
                continue
            ev, why = node.args[0], node.args[1]
            if isinstance(ev, ast.Constant) and isinstance(ev.value, str):
                r = why.value if isinstance(why, ast.Constant) else None
                out.append((path.name, node.lineno, ev.value, r))
    return out


def test_the_event_names_the_firmware_uses_are_known():
    calls = event_calls()
    assert len(calls) >= 5  # app.py, sms.py, uplink.py
    for file, line, ev, why in calls:
        assert ev in app.EVENT_CODES, f"{file}:{line}: event {ev!r}"
        assert why is None or why in app.REASON_CODES, f"{file}:{line}: {why!r}"


def test_the_pump_speaks_the_same_names():
    from jkfw import pump

    for k in ("START", "STOP", "MODE", "RAISED", "CLEARED", "LOCKOUT", "LOCKOUT_END"):
        assert getattr(pump, k) in app.EVENT_CODES, k
    for s in pump.SOURCES:
        assert s in app.REASON_CODES, s


def pump_states() -> set[str]:
    """The literal values pump.py assigns to self.state (alone or in a tuple)."""
    out = set()
    for node in ast.walk(ast.parse((REPO / "firmware" / "pump.py").read_text())):
        if not isinstance(node, ast.Assign):
            continue
        for t in node.targets:
            pairs = [(t, node.value)]
            if isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                pairs = list(zip(t.elts, node.value.elts, strict=False))
            for tgt, val in pairs:
                if (isinstance(tgt, ast.Attribute) and tgt.attr == "state"
                        and isinstance(val, ast.Constant)):  # fmt: skip
                    out.add(val.value)
    return out


def test_every_pump_state_has_its_heartbeat_code():
    # heartbeat_task sends STATE_CODES.get(pump.state, 0): a state missing there
    # would be reported as "boot"
    assert pump_states() == set(app.STATE_CODES)
