"""`jalkal decode` of a log that mixes known kinds with kinds this reader does not
know (SPEC "Versions and evolution": new kinds take unused codes, old readers keep
them raw as `payload`). Every format writes every frame, the unknown kind's payload
as hex; `jalkal report` over such a log ignores them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jalkal.cli import main
from jkproto import codec as c

DEV = 0x0A1B2C3D
KEY = bytes(range(32))
T0 = 1772303400  # 2026-03-01 00:00 IST
KNOWN = set(c.PAYLOAD_FMT)


def _log(unknown: list[tuple[int, bytes]]) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A chained, signed log: a boot frame, then readings with each unknown
    (kind, payload) after one; returns the bytes and (kind, payload) per frame."""
    sg = c.Signer(KEY)
    plan = [(c.BOOT, c.pack_payload(c.BOOT, (1, 1, 2, 0, 900, 100, 100)))]
    for i, u in enumerate(unknown or [(200, b"")]):
        plan.append((c.READING, c.pack_payload(c.READING, (0, 10 * i, 0, 16, 0, 0))))
        plan.append(u)
    plan.append((c.READING, c.pack_payload(c.READING, (0, 999, 0, 16, 0, 0))))
    out, prev = [], 0
    for seq, (kind, payload) in enumerate(plan):
        f = c.pack(kind, DEV, 1, seq, T0 + 900 * seq, 2, prev, payload, signer=sg)
        prev = int.from_bytes(f[-c.TRAILER_LEN : -c.TRAILER_LEN + 2], "little")
        out.append(f)
    return b"".join(out), plan


def _write(tmp: Path, unknown: list[tuple[int, bytes]]) -> tuple[Path, list]:
    data, plan = _log(unknown)
    (tmp / "log.jkl").write_bytes(data)
    doc = {"devices": {f"{DEV:08x}": {"key": KEY.hex()}}}
    (tmp / "keys.json").write_text(json.dumps(doc))
    return tmp / "log.jkl", plan


def _check_rows(rows: list[dict], plan: list[tuple[int, bytes]]) -> None:
    assert len(rows) == len(plan)
    for r, (kind, payload) in zip(rows, plan, strict=True):
        assert str(r["chain"]) == "ok" and r["verified"] in (True, "true", "True")
        if kind in KNOWN:
            assert r["kind"] in ("boot", "reading")
            assert r.get("payload") in (None, "")
        else:
            assert str(r["kind"]) == str(kind)
            assert (r.get("payload") or "") == payload.hex()


def _decode_all(tmp: Path, log: Path, plan: list[tuple[int, bytes]]) -> None:
    keys = ["--keys", str(tmp / "keys.json")]
    assert main(["decode", *keys, str(log), "-o", str(tmp / "o.jsonl")]) == 0
    lines = (tmp / "o.jsonl").read_text().splitlines()
    _check_rows([json.loads(x) for x in lines], plan)
    for fmt in ("csv", "parquet"):
        out = tmp / f"o.{fmt}"
        assert main(["decode", *keys, "--format", fmt, str(log), "-o", str(out)]) == 0
        tb = pq.read_table(out) if fmt == "parquet" else _read_csv(out)
        assert tb.column("kind").type == "string"
        _check_rows(tb.to_pylist(), plan)


def _read_csv(path: Path):
    # every column as text: the hex payload "010203" must not be read as a number
    opts = pcsv.ConvertOptions(
        column_types={"kind": "string", "payload": "string"},
        strings_can_be_null=True,
    )
    return pcsv.read_csv(path, convert_options=opts)


def test_decode_every_format_keeps_unknown_kinds(tmp_path):
    log, plan = _write(tmp_path, [(9, b"\x01\x02\x03"), (200, b""), (8, b"\xa5" * 40)])
    _decode_all(tmp_path, log, plan)


# kind codes no v1 table knows, with payloads of any length the frame allows
unknown_frames = st.lists(
    st.tuples(
        st.integers(0, 255).filter(lambda k: k not in KNOWN),
        st.binary(max_size=c.MAX_PAYLOAD),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(unknown=unknown_frames)
def test_decode_unknown_kind_codes(tmp_path_factory, unknown):
    tmp = tmp_path_factory.mktemp("u")
    log, plan = _write(tmp, unknown)
    _decode_all(tmp, log, plan)


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_report_ignores_unknown_kinds(tmp_path, capsys, fmt):
    log, _plan = _write(tmp_path, [(9, b"\x01\x02\x03"), (200, b"")])
    reg = tmp_path / "v.csv"
    reg.write_text(f"device,village,population\n{DEV:08x},Rampur,100\n")
    args = ["--villages", str(reg), "--keys", str(tmp_path / "keys.json")]
    assert main(["report", *args, "--format", fmt, str(log)]) == 0
    out = capsys.readouterr().out
    assert "Rampur" in out
