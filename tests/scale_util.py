"""Shared by the plot, HTML, export and Dask tests: simulated villages in a store,
and synthetic frame tables (the store's columns) regular and not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from jalkal.ingest.replay import batches, read_frames
from jalkal.ingest.store import Store
from jalkal.keys import load_keys
from jksim import scenario
from jksim.village import simulate

T0 = 1772303400  # 2026-03-01 00:00 Asia/Kolkata
SCENARIOS = (("normal", 1), ("power-cuts", 2), ("sensor-faults", 3))


def sim_store(root: Path, days: int = 4) -> tuple[Path, Path]:
    """Three simulated villages (normal, power cuts, sensor faults) in one store
    and one registry (two blocks). Returns (store, villages.csv)."""
    keys: dict = {"devices": {}}
    lines = ["device,village,population,block,district,state"]
    for i, (name, seed) in enumerate(SCENARIOS):
        out = root / f"v{i}"
        raw = scenario.builtin(name, days, seed)
        raw["village"] = {"name": f"Gaon{i}", "population": 900 + 150 * i}
        simulate(scenario.normalize(raw, name), out)
        keys["devices"].update(json.loads((out / "keys.json").read_text())["devices"])
        row = (out / "villages.csv").read_text().splitlines()[1].split(",")
        lines.append(f"{row[0]},{row[1]},{row[2]},Block{i % 2},Raigarh,CG")
    (root / "keys.json").write_text(json.dumps(keys))
    reg = root / "villages.csv"
    reg.write_text("\n".join(lines) + "\n")
    db = root / "s.duckdb"
    with Store(db, load_keys(root / "keys.json")) as st:
        for i in range(len(SCENARIOS)):
            files, _ = read_frames((str(root / f"v{i}" / "sd"),))
            for b in batches(files, 500, False):
                st.ingest(b.data)
    return db, reg


def device_stream(dev: int, ndays: int, rng: np.random.Generator, mean: float = 5.0):
    """One device's frames (store columns): a boot frame then a reading every
    15 minutes on the grid from local midnight for ndays days, all with a clock."""
    n = ndays * 96 + 1
    kind = np.full(n + 1, 2, np.uint8)
    kind[0] = 1
    t = np.concatenate(([T0 - 60], T0 + np.arange(n, dtype=np.int64) * 900))
    inc = rng.poisson(mean, n + 1)
    inc[0] = 0
    z = np.zeros(n + 1, np.uint32)
    cols = {
        "device": np.full(n + 1, dev, np.uint32),
        "boot": np.ones(n + 1, np.uint16),
        "seq": np.arange(n + 1).astype(np.uint16),
        "kind": kind,
        "flags": np.full(n + 1, 2, np.uint8),
        "t": t.astype(np.uint32),
        "supply_pulses": np.cumsum(inc).astype(np.uint32),
        "pump_s": np.where(inc > 0, 600, 0).astype(np.uint16),
        "interval_s": np.where(kind == 1, 900, 0).astype(np.uint16),
        "supply_pulses_per_m3": np.where(kind == 1, 100, 0).astype(np.uint32),
        "start": z,
        "seconds": z,
        "reset": np.where(kind == 1, 1, 0).astype(np.uint8),
        "event": np.zeros(n + 1, np.uint8),
        "reason": np.zeros(n + 1, np.uint8),
        "value": z,
        "inputs": np.full(n + 1, 0x18, np.uint8),
        "at_uptime_s": z,
    }
    return cols


def _set(cols: dict, name: str, idx, value) -> None:
    a = cols[name].copy()
    a[idx] = value
    cols[name] = a


def synthetic(ndev: int = 16, ndays: int = 20, seed: int = 1) -> tuple[pa.Table, str]:
    """Frames of ndev devices, most regular, some with what sends a device to
    report.compute (a total going backwards, a frame with no clock, a boot after
    a power cut, a gap), and a registry with dated rows, two devices in one
    village, another time zone and an unregistered device."""
    rng = np.random.default_rng(seed)
    tabs = []
    for i in range(ndev):
        c = device_stream(0x10000000 + i, ndays, rng, mean=3.0 + i % 5)
        if i % 5 == 1:  # lost readings: incomplete days
            keep = np.ones(c["kind"].size, bool)
            keep[rng.integers(1, keep.size, 4)] = False
            c = {k: v[keep] for k, v in c.items()}
            c["seq"] = np.arange(keep.sum()).astype(np.uint16)
        if i % 5 == 2:  # no mains for 10 hours, a lockout and a fault
            _set(c, "inputs", slice(100, 140), 0x08)
            _set(c, "kind", [200, 300], 3)
            _set(c, "event", 200, 7)
            _set(c, "event", 300, 3)
        if i == 3:  # a total going backwards
            _set(c, "supply_pulses", slice(500, None), c["supply_pulses"][500:] - 5000)
        if i == 8:  # an untimed reading
            _set(c, "flags", 50, 0)
        if i == 13:  # a boot after a power cut
            for k, v in (("kind", 1), ("reset", 1), ("interval_s", 900),
                         ("supply_pulses_per_m3", 100)):  # fmt: skip
                _set(c, k, 400, v)
        if i == 14:  # a watchdog reboot: still regular
            for k, v in (("kind", 1), ("reset", 3), ("interval_s", 900),
                         ("supply_pulses_per_m3", 100)):  # fmt: skip
                _set(c, k, 400, v)
        if i == 9:  # a gap frame
            _set(c, "kind", 600, 5)
            _set(c, "start", 600, T0 + 5 * 86400)
            _set(c, "seconds", 600, 7200)
        tabs.append(pa.table(c))
    lines = ["device,village,population,block,district,state,tz,from,to"]
    for i in range(ndev):
        d = f"{0x10000000 + i:08x}"
        if i == 5:
            lines += [f"{d},Amli,1000,East,Raigarh,CG,,,2026-03-08",
                      f"{d},Bori,700,East,Raigarh,CG,,2026-03-10,"]  # fmt: skip
        elif i == 6:
            lines.append(f"{d},Chhal,1200,West,Raigarh,CG,,,")
        elif i == 7:
            lines.append(f"{d},Chhal,1200,West,Raigarh,CG,,,")
        elif i == 10:
            lines.append(f"{d},Dharam,900,Hill,Kathmandu,NP,Asia/Kathmandu,,")
        elif i == 11:
            continue  # not registered
        else:
            lines.append(f"{d},V{i:02d},{500 + 37 * i},{'East' if i % 2 else 'West'},"
                         "Raigarh,CG,,,")  # fmt: skip
    return pa.concat_tables(tabs), "\n".join(lines) + "\n"
