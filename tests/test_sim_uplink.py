"""`jalkal sim --scenario sim-outage --uplink URL` against a real `jalkal serve` on
127.0.0.1: after a week without the mobile network every frame the board logged is
in the store exactly once, the report from the store equals the report from the SD
card, and the modem's SIM data stayed far under the cap. Through a simulated SIM800
(HTTP) and SIM7600 (HTTP, and MQTT through a real Mosquitto), each answering in the
formats SIMCom documents (tests/data/modem)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from uplink_util import MOSQUITTO, Mosquitto, Server

from jalkal.ingest.store import Store
from jkproto import codec
from jksim import scenario
from jksim.village import identity

DAYS = 10  # the outage: day 2 06:00 to day 9 06:00; two days to catch up


def jalkal(*args):
    res = subprocess.run(
        [sys.executable, "-m", "jalkal", *args], capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout


SIM7600 = (
    """board = "lilygo-t-sim7600"
days = %d
[[fault]]
kind = "sim_outage"
start = "2026-03-02T06:00"
hours = 168
"""
    % DAYS
)


@pytest.fixture(params=["sim800-http", "sim7600-http", "sim7600-mqtt"])
def run(tmp_path, request):
    """The sim-outage village uploading to a fresh server; yields (out dir, store,
    the sim's output)."""
    name = "sim-outage"
    if request.param.startswith("sim7600"):
        name = str(tmp_path / "sim-outage-7600.toml")
        (tmp_path / "sim-outage-7600.toml").write_text(SIM7600)
    mqtt = request.param.endswith("mqtt")
    if mqtt and not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto not installed")
    sc = scenario.load(name, days=DAYS)
    dev, key = identity(sc)  # the device's key, known before the run
    keys = tmp_path / "server-keys.json"
    keys.write_text(json.dumps({"devices": {dev: {"key": key.hex()}}}))
    keys.chmod(0o600)  # serve refuses a keys file others may read
    mq = Mosquitto(tmp_path / "mq").start() if mqtt else None
    srv = Server(tmp_path, tmp_path / "store.duckdb", keys)
    out = tmp_path / "out"
    try:
        srv.start(http=None, mqtt=mq.url) if mq else srv.start()
        url = mq.url if mq else srv.http
        text = jalkal("sim", "--scenario", name, "--days", str(DAYS), "--out",
                      str(out), "--uplink", url)  # fmt: skip
    finally:
        srv.stop()
        if mq:
            mq.stop()
    return out, tmp_path / "store.duckdb", text


def sd_keys(out):
    data = b"".join(p.read_bytes() for p in sorted((out / "sd" / "log").glob("*.jkl")))
    return [tuple(codec.unpack_head(data, o)[5:7]) for o, _k in codec.scan(data)]


def test_sim_outage_every_frame_once_and_the_same_report(run):
    out, store, text = run
    logged = sd_keys(out)
    with Store(store) as st:
        tb = st.query("SELECT boot, seq FROM frames")
        stored = list(zip(tb.column(0).to_pylist(), tb.column(1).to_pylist(),
                          strict=True))  # fmt: skip
    assert len(stored) == len(set(stored))  # unique on (device, boot, seq)
    assert sorted(stored) == sorted(set(logged))  # everything, once
    villages = str(out / "villages.csv")
    from_sd = jalkal("report", str(out / "sd"), "--villages", villages, "--keys",
                     str(out / "keys.json"), "--format", "json")  # fmt: skip
    from_store = jalkal("report", "--store", str(store), "--villages", villages,
                        "--format", "json")  # fmt: skip
    assert json.loads(from_sd) == json.loads(from_store)
    # what the modem cost: the estimate of the simulated modem (real HTTP bytes
    # plus TCP/IP), far under the firmware's own cap of 150 KB a day
    m = re.search(r"uplink +(\d+) posts, ([\d,]+) B of SIM data", text)
    assert m, text
    posts, air = int(m.group(1)), int(m.group(2).replace(",", ""))
    assert 50 < posts < 200 and air < DAYS * 150_000
    print(f"sim-outage, {DAYS} days: {posts} POSTs, {air:,} B of SIM data")
