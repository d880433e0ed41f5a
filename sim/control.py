"""The plant's side of the controller's level and solar control (docs/sensors.md,
"Control"): a 4-20 mA transducer on the tank floor, and a solar scheme's sun,
panel and battery. Both are wired to an ADS1115 on the board's I2C bus, through
sim/probes.py's stand-ins, so the firmware reads them as it reads real parts:

- tank level: a transducer of TANK_RANGE_M into a BORE_SHUNT-ohm shunt on input 1,
  the tank TANK_HEIGHT_M high (its area from the scheme's litres), with the
  scenario's `sensor` faults on `tank` (open loop, short, drift, ...);
- solar: irradiance from aquifer.Sun (a clear-sky day, cloudy days listed or drawn
  from the seed), the panel's voltage (Sun.panel_volts) through a divider on
  input 0, and a 12 V battery charged by the panel and drained by the controller
  (and by the pump's contactor and drive while the relay is on) through a divider
  on input 3. The pump draws only while the irradiance is at
  least need_w: it can lift nothing below that, whatever the relay does.

Ground truth: the tank's level every plant step (per local day its least and most
litres; a sample every 10 min), the sun every 10 min (irradiance, panel volts,
whether it drives the pump, battery volts) and each day's cloudiness and hours
of drive."""

from __future__ import annotations

from typing import Any

from .aquifer import Fault, LoopTransducer, Sun
from .fitted import BORE_SHUNT, DIVIDER, TANK_HEIGHT_M
from .plant import TICK_MS
from .probes import Probes, fit

TANK_RANGE_M = 5.0  # the tank transducer's full scale, metres of water
PANEL, TANK, BATTERY = 0, 1, 3  # ADS1115 inputs
SAMPLE_S = 600  # truth samples every 10 min
BATTERY_EMPTY_V, BATTERY_FULL_V = 11.7, 12.8  # rest voltage at 0 and 100 % charge


def panel_volts(g: float) -> float:
    return Sun.panel_volts(g)


def board_config(sc: dict) -> dict:
    """config.json keys for the scenario's tank level and solar sections: the
    controller's marks and thresholds set from the plant's numbers."""
    out: dict[str, Any] = {}
    t = sc["tank_level"]
    if t["fitted"]:
        area = sc["scheme"]["tank_litres"] / 1000 / TANK_HEIGHT_M
        out["tank"] = {
            "in": "ads%d" % TANK, "shunt_ohm": BORE_SHUNT, "range_m": TANK_RANGE_M,
            "shape": "vertical", "height_m": TANK_HEIGHT_M,
            "diameter_m": round((4 * area / 3.141592653589793) ** 0.5, 4),
            "low_m": round(t["low_frac"] * TANK_HEIGHT_M, 3),
            "high_m": round(t["high_frac"] * TANK_HEIGHT_M, 3),
            "every_s": t["every_s"],
        }  # fmt: skip
    s = sc["solar"]
    if s["fitted"]:
        div = {"r_top": DIVIDER[0], "r_bottom": DIVIDER[1]}
        volts = {"panel": dict(div, **{"in": "ads%d" % PANEL})}
        solar = {
            # stop while the sun still drives the pump, start only with some to spare
            "stop_v": round(panel_volts(s["need_w"] * s["stop_x"]), 2),
            "start_v": round(panel_volts(s["need_w"] * s["start_x"]), 2),
            "settle_s": s["settle_s"], "every_s": s["every_s"],
        }  # fmt: skip
        if s["battery_ah"] > 0:
            volts["battery"] = dict(div, **{"in": "ads%d" % BATTERY})
            solar.update(battery_cut_v=s["cut_v"], battery_on_v=s["on_v"])
        out["volts"] = volts
        out["solar"] = solar
    return out


class Control:
    """The tank transducer and the solar scheme of a scenario, fitted to the
    simulated HAL and to the plant (as its `fitted`: the motor runs only while
    the panel drives it; the borewell stays the plant's own store)."""

    def __init__(self, sc: dict, clock: Any, hal: Any, plant: Any):
        self.sc, self.clock, self.plant, self.hal = sc, clock, plant, hal
        self.area_m2 = sc["scheme"]["tank_litres"] / 1000 / TANK_HEIGHT_M
        self.tank = None
        p = Probes()
        if sc["tank_level"]["fitted"]:
            faults = [
                Fault(f["mode"], f["at_s"], f["at_s"] + int(f["hours"] * 3600),
                      f["rate"])
                for f in sc["fault"]
                if f["kind"] == "sensor" and f["sensor"] == "tank"
            ]  # fmt: skip
            self.tank = LoopTransducer(TANK_RANGE_M, faults, sc["seed"])
            p.ads_volts[TANK] = self._tank_volts
        s = sc["solar"]
        self.solar = s if s["fitted"] else None
        self.sun = Sun(sc["seed"], s["peak_w"], tuple(s["cloudy_days"]),
                       s["p_cloudy"])  # fmt: skip
        self.soc = 1.0
        if self.solar:
            p.ads_volts[PANEL] = lambda: self.panel() * DIVIDER[1] / sum(DIVIDER)
            if s["battery_ah"] > 0:
                p.ads_volts[BATTERY] = lambda: (
                    self.battery() * DIVIDER[1] / sum(DIVIDER)
                )
        fit(hal, p)
        self.levels: dict[int, list[float]] = {}  # local day -> [least, most] litres
        self.samples: list[list] = []  # tank: [utc, litres]; sun: see truth()
        self.sun_rows: list[list] = []
        self.drive_s: dict[int, float] = {}
        self.tz_s = sc["tz_offset_min"] * 60

    def t(self) -> float:
        """Seconds since the scenario's first local midnight: local solar time."""
        return self.clock.ms / 1000

    # --- the sun
    def irradiance(self) -> float:
        return self.sun.irradiance(self.t())

    def panel(self) -> float:
        return panel_volts(self.irradiance())

    def drives(self) -> bool:
        """The panel can drive the pump now (a solar scheme; always otherwise)."""
        return self.solar is None or self.irradiance() >= self.solar["need_w"]

    def battery(self) -> float:
        return BATTERY_EMPTY_V + (BATTERY_FULL_V - BATTERY_EMPTY_V) * self.soc

    # --- the plant asks (as of jksim.fitted.Fitted)
    def running(self, relay: bool) -> bool:
        return relay and self.drives()

    def lifts(self) -> bool:
        return self.plant.well_l > 0

    def dry(self) -> bool:
        p = self.plant
        return p.well_l < p.pump_lpm * TICK_MS / 60000 * 0.5

    # --- the wire
    def _tank_volts(self) -> float:
        head = self.plant.level / 1000 / self.area_m2
        assert self.tank is not None
        return self.tank.ma(self.t(), head) / 1000 * BORE_SHUNT

    # --- truth, every plant step (just after the plant's own)
    def start(self) -> None:
        self.clock.at(TICK_MS, self.tick)

    def tick(self) -> None:
        t = self.t()
        utc = self.sc["start_utc"] + int(t)
        day = int(t // 86400)
        litres = self.plant.level
        lo_hi = self.levels.setdefault(day, [litres, litres])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], litres), max(lo_hi[1], litres)
        s = self.solar
        if s is not None:
            g = self.irradiance()
            dt = TICK_MS / 1000
            if g >= s["need_w"]:
                self.drive_s[day] = self.drive_s.get(day, 0.0) + dt
            if s["battery_ah"] > 0:
                amps = s["charge_a"] * g / 1000 - s["load_a"]
                if self.hal.relay_is_on():  # the contactor's coil and the drive
                    amps -= s["pump_a"]
                soc = self.soc + amps * dt / 3600 / s["battery_ah"]
                self.soc = min(1.0, max(0.0, soc))
        if int(t) % SAMPLE_S == 0:
            if self.tank is not None:
                self.samples.append([utc, round(litres, 1)])
            if s is not None:
                g = self.irradiance()
                self.sun_rows.append(
                    [utc, round(g, 1), round(panel_volts(g), 3), self.drives(),
                     round(self.battery(), 3) if s["battery_ah"] > 0 else None]
                )  # fmt: skip
        self.clock.at(self.clock.ms + TICK_MS, self.tick)

    def truth(self, dates: list[str]) -> dict:
        """The control's ground truth; dates: the local dates, by day index."""
        out: dict[str, Any] = {}
        if self.tank is not None:
            tl = self.sc["tank_level"]
            cap = self.sc["scheme"]["tank_litres"]
            out["tank_level"] = {
                "tank_litres": cap, "height_m": TANK_HEIGHT_M,
                "low_litres": tl["low_frac"] * cap,
                "high_litres": tl["high_frac"] * cap,
                "days": [{"date": dates[d], "least_l": round(v[0], 1),
                          "most_l": round(v[1], 1)}
                         for d, v in sorted(self.levels.items()) if d < len(dates)],
                "samples": self.samples,
            }  # fmt: skip
        s = self.solar
        if s is not None:
            out["solar"] = {
                "need_w": s["need_w"], "battery_ah": s["battery_ah"],
                "days": [{"date": dates[d], "cloudy": self.sun.cloudy(d),
                          "drive_hours": round(self.drive_s.get(d, 0.0) / 3600, 4)}
                         for d in range(len(dates))],
                "samples": self.sun_rows,
            }  # fmt: skip
        return out
