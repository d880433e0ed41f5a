"""Store: atomic, CRC-checked controller state on flash."""

import json
import os
import textwrap

import pytest
from conftest import firmware_files

from jkfw.store import Store, defaults


def state(boots, pulses=(0, 0), **kw):
    s = defaults()
    s.update(boots=boots, epoch=boots, pulses=list(pulses), **kw)
    return s


class PowerCut(Exception):
    pass


def cut_rename_at(monkeypatch, n):
    """Make the n-th os.rename (1-based) lose power before it happens."""
    real = os.rename
    calls = []

    def rename(a, b):
        calls.append((a, b))
        if len(calls) == n:
            raise PowerCut
        real(a, b)

    monkeypatch.setattr(os, "rename", rename)
    return lambda: monkeypatch.setattr(os, "rename", real)


def test_defaults_when_nothing_there(tmp_path):
    st = Store(str(tmp_path))
    assert st.load() == defaults()
    assert st.source is None and st.writes == 0


def test_round_trip_and_write_count(tmp_path):
    st = Store(str(tmp_path))
    s = state(3, (123456, 98765), ckpt_utc=1772323200, ckpt_uptime_s=42, backoff=2)
    assert st.save(s)
    assert st.save(s)  # unchanged: nothing written
    assert st.writes == 1
    s2 = state(3, (123500, 98765), ckpt_utc=1772326800)
    assert st.save(s2)
    assert st.writes == 2
    assert sorted(os.listdir(tmp_path)) == ["state.bak", "state.json"]
    fresh = Store(str(tmp_path))
    assert fresh.load() == s2 and fresh.source == "json"
    doc = json.loads((tmp_path / "state.json").read_text())  # plain JSON on flash
    assert doc["n"] == 2 and doc["state"] == s2
    assert json.loads((tmp_path / "state.bak").read_text())["state"] == s


def test_missing_keys_default_and_unknown_keys_kept(tmp_path):
    st = Store(str(tmp_path))
    assert st.save({"boots": 5, "future": [1, 2]})
    got = Store(str(tmp_path)).load()
    assert got["boots"] == 5 and got["future"] == [1, 2]
    assert got["pulses"] == [0, 0] and got["backoff"] == 0


def test_partial_tmp_at_every_byte_keeps_last_good(tmp_path):
    st = Store(str(tmp_path))
    old, new = state(7, (1000, 2000)), state(8, (1500, 2600))
    assert st.save(old)
    assert st.save(new)
    old_text = (tmp_path / "state.bak").read_bytes()
    new_text = (tmp_path / "state.json").read_bytes()  # the save after old's
    (tmp_path / "state.bak").unlink()
    for cut in range(len(new_text) + 1):  # power lost writing state.tmp
        (tmp_path / "state.json").write_bytes(old_text)
        (tmp_path / "state.tmp").write_bytes(new_text[:cut])
        fresh = Store(str(tmp_path))
        whole = cut >= len(new_text) - 1  # only the final newline missing
        assert fresh.load() == (new if whole else old), cut
        assert fresh.source == ("tmp" if whole else "json")


def test_power_cut_before_first_rename(tmp_path, monkeypatch):
    st = Store(str(tmp_path))
    assert st.save(state(1))
    restore = cut_rename_at(monkeypatch, 1)
    with pytest.raises(PowerCut):
        st.save(state(2))  # state.tmp complete, state.json still the old one
    restore()
    assert sorted(os.listdir(tmp_path)) == ["state.json", "state.tmp"]
    fresh = Store(str(tmp_path))
    # state.tmp checks and is newer: the save had finished writing it
    assert fresh.load() == state(2) and fresh.source == "tmp"
    assert sorted(os.listdir(tmp_path)) == ["state.bak", "state.json"]


def test_power_cut_between_renames_then_again_while_saving(tmp_path, monkeypatch):
    st = Store(str(tmp_path))
    assert st.save(state(1))
    assert st.save(state(2))
    restore = cut_rename_at(monkeypatch, 2)
    with pytest.raises(PowerCut):
        st.save(state(3))  # state.json moved to .bak, state.tmp not yet renamed
    restore()
    assert sorted(os.listdir(tmp_path)) == ["state.bak", "state.tmp"]
    fresh = Store(str(tmp_path))
    got = fresh.load()
    assert got == state(3)
    # load finished the save, so a torn next state.tmp cannot cost state 3
    (tmp_path / "state.tmp").write_bytes(b'{"crc":1,"n":9,"sta')
    assert Store(str(tmp_path)).load() == state(3)


def test_corrupt_main_falls_back_to_bak(tmp_path):
    st = Store(str(tmp_path))
    assert st.save(state(1, (10, 20)))
    assert st.save(state(2, (30, 40)))
    main = tmp_path / "state.json"
    good = main.read_bytes()
    for bad in (
        b"",
        good[:-5],
        good.replace(b"30", b"31"),  # valid JSON, wrong CRC
        b"\xff" * len(good),
    ):
        main.write_bytes(bad)
        fresh = Store(str(tmp_path))
        assert fresh.load() == state(1, (10, 20)), bad
        assert fresh.source == "bak"
    # the next save repairs state.json and keeps the good .bak
    assert fresh.save(state(3))
    again = Store(str(tmp_path))
    assert again.load() == state(3) and again.source == "json"
    assert json.loads((tmp_path / "state.bak").read_text())["state"] == state(
        1, (10, 20)
    )
    main.write_bytes(b"junk")
    (tmp_path / "state.bak").write_bytes(b"junk")
    assert Store(str(tmp_path)).load() == defaults()


def test_save_without_load_continues_count(tmp_path):
    assert Store(str(tmp_path)).save(state(1))
    assert Store(str(tmp_path)).save(state(2))
    assert json.loads((tmp_path / "state.json").read_text())["n"] == 2
    assert Store(str(tmp_path)).load() == state(2)


def test_fat_rename_refuses_existing_target(tmp_path, monkeypatch):
    real = os.rename

    def rename(a, b):
        if os.path.exists(b):
            raise OSError(17, "exists")
        real(a, b)

    monkeypatch.setattr(os, "rename", rename)
    st = Store(str(tmp_path))
    for i in range(1, 4):
        assert st.save(state(i))
    assert Store(str(tmp_path)).load() == state(3)


def test_storage_errors_return_false(tmp_path):
    st = Store(str(tmp_path / "missing"))
    assert st.load() == defaults()
    assert not st.save(state(1))
    assert st.writes == 0


MPY_SCRIPT = textwrap.dedent(
    """
    import json, os
    from jkfw.store import Store, defaults

    st = Store("/flash")
    print(json.dumps(st.load() == defaults()))
    s = defaults()
    for i in range(1, 4):
        s["boots"] = i
        s["pulses"] = [1000 * i, 2**32 - i]
        s["ckpt_utc"] = 1772323200 + 3600 * i
        print(st.save(s), st.writes)
    print(st.save(s), st.writes)
    print(sorted(os.listdir("/flash")))
    with open("/flash/state.json", "wb") as f:  # corrupt: falls back to .bak
        f.write(b'{"crc":0,"n":99,"state":{}}')
    with open("/flash/state.tmp", "w") as f:  # a torn save
        f.write('{"crc":1,"n":100,"st')
    fresh = Store("/flash")
    print(json.dumps(fresh.load()), fresh.source)
    print(fresh.save(s), fresh.writes)
    again = Store("/flash")
    print(json.dumps(again.load()), again.source)
    print(Store("/nope").save(s))
    """
)


@pytest.mark.micropython
def test_store_in_micropython(mpy):
    out = mpy.run(MPY_SCRIPT, files=firmware_files()).splitlines()
    s = defaults()
    s.update(boots=3, pulses=[3000, 2**32 - 3], ckpt_utc=1772323200 + 3 * 3600)
    s2 = dict(s, boots=2, pulses=[2000, 2**32 - 2], ckpt_utc=1772323200 + 2 * 3600)
    assert out[:6] == [
        "true",
        "True 1",
        "True 2",
        "True 3",
        "True 3",
        "['jkfw', 'jkproto', 'state.bak', 'state.json']",
    ]
    got, src = out[6].rsplit(" ", 1)
    assert (json.loads(got), src) == (s2, "bak")
    assert out[7] == "True 1"
    got, src = out[8].rsplit(" ", 1)
    assert (json.loads(got), src) == (s, "json")
    assert out[9] == "False"
