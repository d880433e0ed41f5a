"""The sensors on the HTML page (issue 19): `jalkal report --html DIR` shows,
per village with measure frames, the sensor columns `jalkal report` gives (the
daily ones and the period's) with the BIS 10500 marks, and the sensor alerts in
its alerts section; a village without sensors gets no sensor table. The page is
parsed with the standard library's html.parser and held to `jalkal report
--format json` over the same logs, the marks to the simulator's truth.json, and
the `motor_relay` episodes to the faults the scenario injected (truth.json),
whatever the number of times the board raised them. Once, the page is opened
in headless Chromium (Playwright)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pytest
from test_sensor_reports import truth_quality

from jalkal.cli import main
from jalkal.decode import bulk
from jalkal.registry import load_registry
from jalkal.reports import alerts, periods, sensor_alerts, sensor_view
from jkproto import codec as c
from jkproto import objects as ob
from jksim import scenario, village

START = date(2026, 3, 1)


class Run:
    """One simulated village: its log folder, registry row and truth."""

    def __init__(self, out: Path):
        self.out = out
        self.log = out / "sd" / "log"
        self.truth = json.loads((out / "truth.json").read_text())["villages"][0]
        self.reg_row = (out / "villages.csv").read_text().splitlines()[1]
        data = b"".join(p.read_bytes() for p in sorted(self.log.glob("*")))
        self.table = bulk.decode(data).table

    @property
    def device(self) -> str:
        return str(self.truth["device"])


def simulate(tmp: Path, name: str, days: int, village_name: str, **more) -> Run:
    """A built-in scenario run under another village's name (its own device)."""
    sc = scenario.load(name, days=days)
    sc["village"]["name"] = village_name
    sc["fault"] += more.get("faults", [])
    v = village.simulate(sc, tmp / village_name)
    assert not v.clock.failures
    return Run(tmp / village_name)


class Page(HTMLParser):
    """The page's tables: per table the h2 id / h3 title above it, its head and
    its rows of (text, class) cells."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: list[dict] = []
        self.section = ""
        self.title = ""
        self._in: str | None = None
        self._text = ""
        self._class = ""
        self._row: list[tuple[str, str]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2":
            self.section, self.title = a.get("id") or "", ""
        elif tag == "h3":
            self._in, self._text = "h3", ""
        elif tag == "table":
            self.tables.append({"section": self.section, "title": self.title,
                                "head": [], "rows": []})  # fmt: skip
        elif tag in ("th", "td"):
            self._in, self._text, self._class = tag, "", a.get("class") or ""
        elif tag == "tr":
            self._row = []

    def handle_endtag(self, tag):
        if tag == "h3":
            self.title, self._in = self._text, None
        elif tag == "th":
            self.tables[-1]["head"].append(self._text)
            self._in = None
        elif tag == "td":
            self._row.append((self._text, self._class))
            self._in = None
        elif tag == "tr" and self._row:
            self.tables[-1]["rows"].append(self._row)

    def handle_data(self, data):
        if self._in:
            self._text += data

    def dicts(self, t: dict) -> list[dict[str, tuple[str, str]]]:
        return [dict(zip(t["head"], r, strict=True)) for r in t["rows"]]


def value(text: str):
    """A cell's text as the JSON value it shows."""
    if text in ("-", "–"):
        return None
    try:
        return float(text)
    except ValueError:
        return text


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Four villages in one report: the motor faults (4 days), the quality
    drift (8 days), one without sensors (3 days) and one with a tank level
    transducer alone (2 days)."""
    tmp = tmp_path_factory.mktemp("sh")
    runs = {
        "motor": simulate(tmp, "motor-faults", 4, "Hirapur"),
        "drift": simulate(tmp, "quality-drift", 8, "Sonpur"),
        "plain": simulate(tmp, "normal", 3, "Khedi"),
        "tank": simulate(tmp, "tank-level", 2, "Tankpur"),
    }
    reg = tmp / "villages.csv"
    reg.write_text(
        "device,village,population,tz\n"
        + "".join(r.reg_row + "\n" for r in runs.values())
    )
    site = tmp / "site"
    logs = [str(r.log) for r in runs.values()]
    args = [*logs, "--villages", str(reg)]
    return runs, args, site


def _json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["report", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def page(world):
    runs, args, site = world
    assert main(["report", *args, "--html", str(site), "--alerts"]) == 0
    text = (site / "index.html").read_text()
    return Page(text), text


def sensor_tables(p: Page) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for t in p.tables:
        if t["section"] == "sensors":
            out.setdefault(t["title"].split(" (")[0], []).append(t)
    return out


def test_the_daily_sensor_columns_are_the_json_reports(world, page, capsys):
    runs, args, _site = world
    p, _text = page
    want = _json(capsys, *args)["days"]
    tables = sensor_tables(p)
    # a table per village with measure frames; none for the village without
    assert set(tables) == {"Hirapur", "Sonpur", "Tankpur"}
    assert all(r["sensor_faults"] is None for r in want if r["village"] == "Khedi")
    heads = {k: h for h, k, _p in sensor_view.DAY_VIEW}
    seen = 0
    for name, (daily, _period) in tables.items():
        rows = p.dicts(daily)
        expect = [
            r for r in want if r["village"] == name and r["sensor_faults"] is not None
        ]
        assert [(r["device"][0], r["date"][0]) for r in rows] == [
            (r["device"], r["date"]) for r in expect
        ]
        for got, r in zip(rows, expect, strict=True):
            for key, head in heads.items():
                text = got[head][0]
                if key in ("water_quality", "sensor_faults"):
                    assert text == (r[key] or "-"), (name, r["date"], key)
                else:
                    assert value(text) == r[key], (name, r["date"], key, text)
                seen += 1
    assert seen == len(heads) * (4 + 8 + 2)


def test_the_period_sensor_columns_are_the_json_reports(world, page, capsys):
    runs, args, _site = world
    p, _text = page
    want = _json(capsys, *args, "--period", "month")["periods"]
    for name, (_daily, period) in sensor_tables(p).items():
        (got,) = p.dicts(period)
        (r,) = [r for r in want if r["village"] == name]
        assert got["period"][0] == r["period"]
        for head, key, _places in sensor_view.PERIOD_VIEW:
            text = got[head][0]
            assert value(text) == r[key], (name, key, text)
    # the drift's two pH days not acceptable: the Table 11 leg non potable
    (sonpur,) = p.dicts(sensor_tables(p)["Sonpur"][1])
    assert sonpur["not acceptable"] == ("2", "n out")
    assert sonpur["Table 11 quality"] == ("non potable", "out")


def test_bis_limits_marked_on_the_truths_days(world, page):
    runs, _args, _site = world
    p, _text = page
    rows = p.dicts(sensor_tables(p)["Sonpur"][0])
    want = truth_quality(runs["drift"])  # per day; None: too near a limit
    assert len(rows) == len(want)
    marks = {"acceptable": "", "permissible": "over", "not acceptable": "out"}
    checked = 0
    for row, w in zip(rows, want, strict=True):
        if w is None:
            continue
        (ph, ph_cls), (tds, tds_cls) = row["pH"], row["TDS mg/L"]
        assert row["water"] == (w, ("" if w == "acceptable" else marks[w]))
        ph_out = not 6.5 <= float(ph) <= 8.5
        assert ph_out == (w == "not acceptable")  # the drift's pH dip
        assert ("out" in ph_cls.split()) == ph_out, (row["date"], ph, ph_cls)
        assert ("over" in tds_cls.split()) == (500 < float(tds) <= 2000)
        if w == "acceptable":
            assert "out" not in tds_cls and "over" not in tds_cls
        checked += 1
    assert checked >= 6
    assert [w for w in want if w == "not acceptable"] == ["not acceptable"] * 2


def test_the_alerts_section_is_the_json_alerts(world, page, capsys):
    runs, args, _site = world
    p, _text = page
    want = _json(capsys, *args, "--alerts")["alerts"]
    (table,) = [t for t in p.tables if t["title"] == "" and "kind" in t["head"]]
    got = p.dicts(table)
    assert [(r["kind"][0], r["village"][0], r["what"][0], r["evidence"][0])
            for r in got] == [(r["kind"], r["village"], r["what"], r["evidence"])
                              for r in want]  # fmt: skip
    kinds = {r["kind"] for r in want}
    assert {"quality", "motor_relay"} <= kinds
    assert not [r for r in want if r["village"] == "Khedi"
                and r["kind"] in sensor_alerts.KINDS]  # fmt: skip


# --- motor_relay: one episode per disagreement -------------------------------------


def motor_faults(run: Run) -> list[dict]:
    return [f for f in run.truth["sensors"]["faults"]
            if f["kind"] in ("motor_trip", "motor_bypass")]  # fmt: skip


def raises(run: Run, reason: str) -> list[int]:
    """The times the board raised the fault (its event frames, decoded)."""
    tb = run.table
    sel = (
        (tb["kind"].to_numpy() == c.EVENT)
        & (tb["event"].to_numpy(zero_copy_only=False) == 3)
        & (tb["reason"].to_numpy(zero_copy_only=False) == ob.REASONS.index(reason))
    )
    return sorted(tb.filter(pa.array(sel))["t"].to_pylist())


def episodes_match_truth(run: Run, eps: list[dict]) -> None:
    """One episode per injected fault, from the board's first raise inside the
    fault's span to its last, counting the raises in that span."""
    faults = motor_faults(run)
    assert len(eps) == len(faults), [x["evidence"] for x in eps]
    for f in faults:
        trip = f["kind"] == "motor_trip"
        reason = "motor_not_running" if trip else "motor_without_relay"
        ts = [t for t in raises(run, reason) if f["from"] <= t <= f["to"] + 60]
        (x,) = [x for x in eps if ("not running" in x["what"]) == trip
                and f["from"] <= x["since"].timestamp() <= f["to"]]  # fmt: skip
        assert int(x["since"].timestamp()) == ts[0]
        assert not x["active"] and ts[-1] <= x["until"].timestamp() <= f["to"] + 600
        if len(ts) > 1:
            assert x["what"].endswith(f", {len(ts)} times"), (x["what"], ts)
        else:
            assert "times" not in x["what"]


def test_motor_relay_one_episode_per_injected_fault(world):
    run = world[0]["motor"]
    reg = load_registry(str(run.out / "villages.csv"))
    eps = [x for x in alerts.alerts(periods.build(run.table, reg)).to_pylist()
           if x["kind"] == "motor_relay"]  # fmt: skip
    # the tripped overload is raised again at every start the lockouts retry
    assert len(raises(run, "motor_not_running")) > 2
    episodes_match_truth(run, eps)


def test_motor_relay_episodes_across_reboots_and_apart(tmp_path):
    """The overload tripped through two power cuts (the board raises it again in
    each boot) and once more the next day, after good runs: one episode for
    each trip, and the bypass another."""
    sc = scenario.load("motor-faults", days=4)
    trip = next(f for f in sc["fault"] if f["kind"] == "motor_trip")
    more = [{**trip, "kind": "power_cut", "at_s": trip["at_s"] + int(h * 3600),
             "hours": 0.25} for h in (2.2, 4.7)]  # fmt: skip
    more.append({**trip, "at_s": trip["at_s"] + 86400, "hours": 6.0})
    run = simulate(tmp_path, "motor-faults", 4, "Hirapur", faults=more)
    reg = load_registry(str(run.out / "villages.csv"))
    rep = periods.build(run.table, reg)
    assert len(rep.result.boots[run.device]) == 3
    eps = [x for x in alerts.alerts(rep).to_pylist() if x["kind"] == "motor_relay"]
    assert len(motor_faults(run)) == 3
    episodes_match_truth(run, eps)
    first = min((x for x in eps if "not running" in x["what"]),
                key=lambda x: x["since"])  # fmt: skip
    assert "in boots 1, 2, 3" in first["evidence"]


# --- the text and CSV say the same ------------------------------------------------


def test_alerts_csv_and_text_carry_the_merged_episode(world, capsys):
    runs, args, _site = world
    capsys.readouterr()
    assert main(["report", *args, "--alerts", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    motor = [r for r in rows if r["kind"] == "motor_relay"]
    assert len(motor) == len(motor_faults(runs["motor"]))
    assert main(["report", *args, "--alerts"]) == 0
    text = capsys.readouterr().out
    assert text.count("motor_relay") == len(motor)
    for r in motor:
        assert r["what"] in text and r["evidence"] in text


# --- in a browser --------------------------------------------------------------------


def test_the_sensor_tables_in_a_browser(page, world):
    sync_api = pytest.importorskip("playwright.sync_api")
    from test_dashboard_support import CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from PIL import Image

    site = world[2]
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=["--no-sandbox"])  # fmt: skip
        try:
            pg = b.new_page(viewport={"width": 1200, "height": 900})
            pg.goto((site / "index.html").resolve().as_uri())
            tables = pg.locator("div.sensors table")
            assert tables.count() == 6  # three villages, daily and period
            for i in range(6):
                assert tables.nth(i).is_visible()
            pg.locator("#sensors").scroll_into_view_if_needed()
            out_cells = pg.locator("div.sensors td.out")
            assert out_cells.count() >= 4 and out_cells.first.is_visible()
            # the marked cell's colour is the page's (not the plain cell's)
            colour = out_cells.first.evaluate("e => getComputedStyle(e).color")
            assert colour == "rgb(179, 71, 0)"
            png = pg.locator("div.sensors").first.screenshot()
        finally:
            b.close()
    img = Image.open(io.BytesIO(png)).convert("RGB")
    small = img.resize((64, 64)).tobytes()
    assert len({small[i : i + 3] for i in range(0, len(small), 3)}) > 8  # not blank
