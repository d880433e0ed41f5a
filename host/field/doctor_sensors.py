"""`jalkal doctor`'s sensor lines: each sensor config.json fits, read on the board
by the firmware's own drivers (built by jkfw.measure.Measure from the board's
config, as the firmware builds them), shown raw and calibrated with its fault:

    ✓ borewell     11.84 mA → 24.31 m below ground (20.69 m above the sensor)
    ✗ borewell     fault: open loop (0.00 mA < 3.6 mA)
    ✓ pH           1432 mV → 7.21 at 23.2 °C, calibrated 2026-11-02 (35 days ago)

Probes are read as the firmware reads them: the median of five samples 100 ms
apart (a 4-20 mA loop, EC, pH, dividers), one DS18B20 conversion (750 ms), two
polls of the ultrasonic sensor 0.5 s apart (in trigger mode five 0x55 triggers,
each polled 150 ms later), one CT window (5 mains cycles). Nothing is written and
the relay is not touched."""

from __future__ import annotations

import time
from typing import Any

from ..console import plural
from . import deploy
from .board import BoardError

# the board's side: (after DOCTOR_HELPERS) `_jk_sensors('/app/a')` -> a list of
# [sensor, fields...] rows, None when config.json fits no sensor
BOARD_CODE = r"""
def _jk_sensors(slot):
    import sys, json, time
    if slot not in sys.path:
        sys.path.insert(0, slot)
    from jkfw import config, hal, measure
    with open('/config.json') as f:
        cfg, bad = config.validate(json.load(f))
    if 'bore' not in cfg:
        return None
    from jkfw import sensors
    N = sensors.NAMES
    class Ctl:
        pass
    c = Ctl()
    c.cfg = cfg
    c.hal = hal.Hal(cfg)
    c.clock = None
    m = measure.Measure(c)
    def med(read):
        got = []
        for i in range(5):
            if i:
                time.sleep_ms(100)
            v = read()
            if v is not None:
                got.append(v)
        if len(got) * 2 <= 5:
            return None
        got.sort()
        return got[len(got) // 2]
    out = [['refused', [str(k) for k in bad]]] if bad else []
    if m.bore:
        lp = m.bore
        ma = med(lp.current)
        if ma is not None:
            lp.from_ma(ma)
        out.append(['bore', ma, lp.head, lp.depth_m, N[lp.fault], lp.shunt])
    if m.geo:
        g = m.geo
        s = m.sonar
        mode = cfg['tank'].get('sonar', 'auto')  # (firmware before the key: auto)
        if s:
            if mode == 'trigger':  # as measure.read_tank: 0x55, 150 ms, poll
                for i in range(len(s.hist)):
                    s.request()
                    time.sleep_ms(150)
                    mm = s.poll()
            else:
                s.poll()
                time.sleep_ms(500)
                mm = s.poll()
            lv = None if mm is None else g.level_m(mm)
            out.append(['sonar', mm, s.last, lv,
                        None if lv is None else g.litres(lv), N[s.fault],
                        g.capacity_l(), mode])
        else:
            ma = med(m.tank.current)
            h = None if ma is None else m.tank.from_ma(ma)
            lv = None if h is None else g.clip(h)
            out.append(['tank', ma, lv, None if lv is None else g.litres(lv),
                        N[m.tank.fault], g.capacity_l()])
    temp = None
    if m.temp:
        t = m.temp
        if t.start():
            time.sleep_ms(t.CONVERT_MS)
            temp = t.result()
        rom = t.rom
        out.append(['temp', temp, N[t.fault],
                    None if rom is None else bytes(rom).hex()])
    if m.ec:
        v = med(m.ec_src.read)
        e = m.ec.value(v, temp)
        f = m.ec.fault or (m.ec_src.fault if v is None else 0)
        out.append(['ec', v, e, m.ec.tds, N[f], m.ec.date])
    if m.ph:
        v = med(m.ph_src.read)
        p = m.ph.value(v, temp)
        f = m.ph.fault or (m.ph_src.fault if v is None else 0)
        out.append(['ph', v, p, N[f], m.ph.date, temp])
    if m.motor:
        mo = m.motor
        a = mo.read()
        out.append(['motor', cfg['motor']['sense'], a, mo.running, N[mo.fault]])
    for div, bit, i in m.volts:
        v = med(div.read)
        name = {64: 'supply', 128: 'panel', 256: 'battery'}[bit]
        pin = getattr(div.src, 'volts', None) if v is None else v / div.ratio
        out.append(['volts', name, pin, v, N[div.fault]])
    return out
"""

PROVISION = "jalkal provision ... --device ID --force"
# what each fault means on site, and what to do
FIXES = {
    "open": "check the cable, its terminals and the loop supply (12-24 V)",
    "short": "a shorted cable or a failed transmitter: check the cable, then swap "
    "the transducer",
    "under": "below the measuring range (3.6-3.8 mA): check the loop supply",
    "over": "above the measuring range: a transducer past its full scale, or the "
    "input past the converter's top; check the range and the shunt",
    "absent": "nothing answers: check the sensor's power, wires and address",
    "crc": "garbled data: check the wire length, the pull-up and the ground",
    "range": "a value the sensor cannot give: no echo, or not converted",
    "stale": "no new data: the sensor stopped sending",
    "dry": "the transducer is out of the water: the water table fell below it, "
    "or it was pulled up; hang it deeper (install_m)",
}
# a silent sonar may be in the other serial mode (docs/sensors.md, JSN-SR04T)
SONAR_MODE_FIX = {
    "auto": "a JSN-SR04T with R27 = 120k sends only when asked: set tank.sonar "
    '"trigger"',
    "trigger": 'tank.sonar is "trigger": is the sensor a JSN-SR04T with R27 = 120k?',
}
DRY_M = 0.02  # a borewell head below this: 4 mA, the transducer in air
ROW_NAMES = {"bore": "borewell", "tank": "tank", "sonar": "tank", "temp": "water temp",
             "ec": "EC / TDS", "ph": "pH", "motor": "motor"}  # fmt: skip


def _n(v: float, digits: int = 2) -> str:
    return f"{v:,.{digits}f}"


def _cal(date: str, today: str | None) -> str:
    if not date:
        return "calibrated (no date)"
    if not today:
        return f"calibrated {date}"
    try:
        from jkfw import quality

        age = quality.cal_age_days(date, today)
    except (ValueError, IndexError):
        return f"calibrated {date}"
    if age is None:
        return f"calibrated {date}"
    return f"calibrated {date} ({plural(age, 'day')} ago)"


def _fault(name: str, what: str = "") -> tuple[str, str]:
    text = f"fault: {name}" + (f" ({what})" if what else "")
    return text, FIXES.get(name, "")


def describe(row: list[Any], today: str | None = None) -> tuple[str, bool, str, str]:
    """(check name, ok, detail, fix) of one row from the board's _jk_sensors()."""
    kind = row[0]
    if kind == "refused":
        return ("sensors", False, "config.json's sensor keys refused by the firmware: "
                + ", ".join(row[1]),
                f"fix them with {PROVISION} (see docs/sensors.md)")  # fmt: skip
    name = ROW_NAMES.get(kind, kind)
    if kind in ("bore", "tank"):
        if kind == "bore":
            _k, ma, head, depth, fault, shunt = row
        else:
            _k, ma, head, litres, fault, cap = row
        if ma is None:
            text, fix = _fault(fault, "no reading from the input")
            return name, False, text, fix
        if fault == "open":
            text, fix = _fault("open loop", f"{ma:.2f} mA < 3.6 mA")
            return name, False, text, FIXES["open"]
        if fault == "short":
            text, fix = _fault("short", f"{ma:.2f} mA > 21 mA")
            return name, False, text, FIXES["short"]
        if fault != "ok":
            text, fix = _fault(fault, f"{ma:.2f} mA")
            return name, False, text, fix
        if kind == "bore" and head < DRY_M:
            return (
                name,
                False,
                f"{ma:.2f} mA → no water above the sensor: the "
                f"level is {_n(depth)} m below ground or deeper",
                FIXES["dry"],
            )
        if kind == "bore":
            return (name, True, f"{ma:.2f} mA → {_n(depth)} m below ground "
                    f"({_n(head)} m above the sensor)", "")  # fmt: skip
        return (name, True, f"{ma:.2f} mA → level {_n(head)} m, {_n(litres, 0)} L "
                f"of {_n(cap, 0)} L", "")  # fmt: skip
    if kind == "sonar":
        _k, mm, last, level, litres, fault, cap = row[:7]
        mode = row[7] if len(row) > 7 else "auto"
        if mm is None:
            what = (
                "no frame from the sensor"
                if fault in ("absent", "stale")
                else (
                    f"last distance {last} mm" if last is not None and last >= 0 else ""
                )
            )
            text, fix = _fault(fault, what)
            if fault in ("absent", "stale"):
                fix += "; " + SONAR_MODE_FIX.get(mode, SONAR_MODE_FIX["auto"])
            return name, False, text, fix
        return (name, True, f"{_n(mm, 0)} mm to the water → level {_n(level)} m, "
                f"{_n(litres, 0)} L of {_n(cap, 0)} L", "")  # fmt: skip
    if kind == "temp":
        _k, temp, fault, rom = row
        if temp is None:
            what = "no DS18B20 answers on the 1-Wire pin" if fault == "absent" else ""
            text, fix = _fault(fault, what)
            return name, False, text, fix
        return name, True, f"{temp:.2f} °C (DS18B20 {rom})", ""
    if kind == "ec":
        _k, volts, ec, tds, fault, date = row
        if fault == "cal":
            return (name, False, "not calibrated", f"two standards: {PROVISION} "
                    "--ec-cal MV=USCM --ec-cal MV=USCM --cal-temp C")  # fmt: skip
        if volts is None or ec is None:
            text, fix = _fault(fault, "no water temperature" if volts is not None
                               else "")  # fmt: skip
            return name, False, text, fix
        return (name, True, f"{volts * 1000:,.0f} mV → {ec:,.0f} µS/cm at 25 °C, "
                f"TDS {tds:,.0f} mg/L, {_cal(date, today)}", "")  # fmt: skip
    if kind == "ph":
        _k, volts, ph, fault, date, temp = row
        if fault == "cal":
            return (name, False, "not calibrated", f"two buffers: {PROVISION} "
                    "--ph-cal MV=PH --ph-cal MV=PH")  # fmt: skip
        if volts is None or ph is None:
            what = f"{volts * 1000:,.0f} mV" if volts is not None else ""
            text, fix = _fault(fault, what)
            return name, False, text, fix
        at = f" at {temp:.1f} °C" if temp is not None else ""
        return (name, True, f"{volts * 1000:,.0f} mV → {ph:.2f}{at}, "
                f"{_cal(date, today)}", "")  # fmt: skip
    if kind == "motor":
        _k, sense, amps, running, fault = row
        if fault != "ok":
            what = "the CT's bias or lead is open" if fault == "open" else ""
            text, fix = _fault(fault, what)
            return name, False, text, fix
        state = "running" if running else "stopped"
        if sense == "ct":
            return name, True, f"{amps:.2f} A RMS (CT) → {state}", ""
        contact = "closed" if running else "open"
        return name, True, f"auxiliary contact {contact} → {state}", ""
    if kind == "volts":
        _k, which, pin, volts, fault = row
        if volts is None:
            text, fix = _fault(fault, f"{pin:.3f} V at the input" if pin else "")
            return which, False, text, fix
        at = f"{pin:.3f} V at the input → " if pin is not None else ""
        return which, True, f"{at}{volts:.2f} V", ""
    return name, False, f"unknown row {row!r}", ""


def rows(b: Any, slot: str) -> list[list[Any]] | None:
    """The board's sensor rows, read by the firmware's drivers in the slot."""
    b.exec(BOARD_CODE)
    out = b.eval(f"_jk_sensors({deploy.slot_dir(slot)!r})")
    return out if out is None else list(out)


def today_utc() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


OK, BAD, NA = "✓", "✗", "–"  # the doctor's marks
SENSOR_KEYS = ("bore", "tank", "quality", "motor", "volts")


def sensors(d: Any) -> None:
    """The doctor's step (jalkal.field.doctor.Doctor.sensors): a line per sensor
    config.json fits, none for a board without sensors."""
    raw = d.raw_cfg or {}
    if not any(raw.get(k) for k in SENSOR_KEYS):
        return
    slot = deploy.read_active(d.b, rom=True)
    if slot is None:
        d.add("sensors", NA, "no firmware deployed: its drivers read the sensors")
        return
    if not d.machine:
        d.add("sensors", NA, "no machine module on this board")
        return
    try:
        got = rows(d.b, slot)
    except BoardError as e:
        d.add("sensors", BAD, f"could not read them: {e}",
              f"jalkal deploy --port {d.b.port} --config DIR/config.json")  # fmt: skip
        return
    today = today_utc()
    for r in got or []:
        name, ok, detail, fix = describe(r, today)
        d.add(name, OK if ok else BAD, detail, fix)
