"""The sensors of a scenario that fits them (its [sensors] table), driven by the
physics of sim/aquifer.py: the borewell's water table (Cooper-Jacob drawdown and
recovery, seasonal decline) behind a 4-20 mA transducer on an ADS1115, the tank
behind an ultrasonic sensor (sending by itself, or a JSN-SR04T answering 0x55
triggers: sensors.sonar), TDS/EC, pH and temperature probes, the motor behind
its contactor with a CT, and the supply and battery dividers. It also decides
what the borewell does to the plant: no water reaches the pump once the level is
below its intake, and the dry-run probe is wet only while water stands above it.
Ground truth: every sample the borewell transducer gave, with the true depth."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .aquifer import Aquifer, Fault, LoopTransducer, Motor, Quality, Sensor
from .probes import Probes, fit

BORE_SHUNT = 150  # ohm, into the ADS1115 at +-4.096 V (docs/sensors.md)
TANK_HEIGHT_M = 3.0
SONAR_ABOVE_MM = 300  # the sonar's face above the overflow
EC_UV = 1000.0  # the EC board: uS/cm per volt (the config's calibration)
PH_SLOPE, PH_OFFSET = -5.7, 21.25  # pH per volt, pH at 0 V (pH 7 at 2.5 V)
DIVIDER = (100000, 10000)
CHANNELS = {"bore": 0, "ec": 1, "ph": 2, "battery": 3}


def board_config(s: dict, scheme: dict) -> dict:
    """The config.json keys that fit the scenario's sensors on the board."""
    area = scheme["tank_litres"] / 1000 / TANK_HEIGHT_M
    diameter = (4 * area / 3.141592653589793) ** 0.5
    return {
        "bore": {
            "in": "ads0", "shunt_ohm": BORE_SHUNT, "range_m": s["range_m"],
            "install_m": s["install_m"], "intake_m": s["intake_m"],
            "margin_m": s["margin_m"], "restart_m": s["restart_m"],
        },
        "tank": {
            "in": "sonar", "shape": "vertical", "height_m": TANK_HEIGHT_M,
            "diameter_m": round(diameter, 4),
            "mount_mm": int(TANK_HEIGHT_M * 1000 + SONAR_ABOVE_MM),
            "sonar": s["sonar"],
        },
        "quality": {
            "ec_in": "ads1", "ph_in": "ads2", "temp": True, "ec_slope": EC_UV,
            "ec_offset": 0.0, "tds_factor": 0.64, "ec_date": "2026-02-20",
            "ph_slope": PH_SLOPE, "ph_offset": PH_OFFSET, "ph_temp_c": 25.0,
            "ph_date": "2026-02-20",
        },
        "motor": {"sense": "ct", "amps_per_volt": 30.0, "on_a": 1.0, "off_a": 0.5},
        "volts": {
            "supply": {"in": "adc", "r_top": DIVIDER[0], "r_bottom": DIVIDER[1]},
            "battery": {"in": "ads3", "r_top": DIVIDER[0], "r_bottom": DIVIDER[1]},
        },
    }  # fmt: skip


class Fitted:
    def __init__(self, sc: dict, clock: Any, hal: Any):
        s = sc["sensors"]
        self.s = s
        self.clock = clock
        start = dt.date.fromisoformat(sc["start"])
        doy = start.timetuple().tm_yday
        self.aquifer = Aquifer(
            T=s["transmissivity"], S=s["storativity"], static_m=s["static_m"],
            trend_m_month=s["trend_m_month"], start_doy=doy,
        )  # fmt: skip
        self.quality = Quality(
            tds_mg=s["tds_mg"], summer_mg=s["summer_mg"], start_doy=doy,
            excursions=tuple(tuple(x) for x in s["ph_excursions"]),
        )  # fmt: skip
        self.motor = Motor(rated_a=s["motor_a"])
        # the motor's running seconds per local day (ground truth), integrated
        # exactly between the changes of its relay, trip and bypass
        self.motor_days: dict[int, float] = {}
        self.motor_t = 0.0
        self.utc0 = sc["start_utc"]
        self.tz_s = sc["tz_offset_min"] * 60
        faults: dict[str, list[Fault]] = {}
        for f in sc["fault"]:
            if f["kind"] == "sensor":
                a = f["at_s"]
                end = a + int(f["hours"] * 3600)
                faults.setdefault(f["sensor"], []).append(
                    Fault(f["mode"], a, end, f["rate"])
                )
        self.bore = LoopTransducer(s["range_m"], faults.get("bore", ()), sc["seed"])
        self.probe = {
            k: Sensor(faults.get(k, ()), sc["seed"] + i)
            for i, k in enumerate(("tank", "ec", "ph", "temp"))
        }
        self.tank_area_m2 = sc["scheme"]["tank_litres"] / 1000 / TANK_HEIGHT_M
        self.plant: Any = None
        self.running_now = False
        self.truth: list[list[float]] = []  # [ms, true depth m, loop mA]
        p = Probes()
        cfg_pins = hal.cfg["pins"]
        p.ads_volts = {
            CHANNELS["bore"]: self._bore_volts,
            CHANNELS["ec"]: self._ec_volts,
            CHANNELS["ph"]: self._ph_volts,
            CHANNELS["battery"]: lambda: 12.8 * DIVIDER[1] / sum(DIVIDER),
        }
        p.pin_volts = {cfg_pins["supply_adc"]: lambda: 12.2 * DIVIDER[1] / sum(DIVIDER)}
        p.sonar_mm = self._sonar_mm
        p.sonar_mode = s["sonar"]  # the sensor fitted as the config says
        p.temp_c = lambda: self.probe["temp"].observe(
            self.t(), self.quality.temp(self.t())
        )
        p.amps = lambda: self.motor.current(self.t())
        p.contact = lambda: self.motor.running(self.t())
        fit(hal, p)

    def t(self) -> float:
        return self.clock.ms / 1000

    # --- the plant asks
    def depth(self) -> float:
        return self.aquifer.depth(self.t())

    def dry(self) -> bool:
        """The dry-run probe reads dry: the water below it."""
        return self.depth() >= self.s["dry_probe_m"]

    def motor_until(self, t: float) -> None:
        """Add the motor's running seconds up to t (sim s) to motor_days, split
        at local midnights; call before its relay, trip or bypass changes."""
        a = self.motor_t
        while a < t:
            day = int((self.utc0 + a + self.tz_s) // 86400)
            b = min(t, day * 86400 + 86400 - self.tz_s - self.utc0)
            ran = self.motor.run_s(a, b)
            if ran:
                self.motor_days[day] = self.motor_days.get(day, 0.0) + ran
            a = b
        self.motor_t = max(self.motor_t, t)

    def motor_fault(self, what: str, on: bool) -> None:
        """A trip or a bypass (scenario faults) begins or ends now."""
        self.motor_until(self.t())
        setattr(self.motor, what, on)

    def running(self, relay: bool) -> bool:
        """The motor behind the relay (tripped or bypassed as the faults say); the
        aquifer is pumped while it runs."""
        t = self.t()
        if relay != self.motor.relay:
            self.motor_until(t)
        self.motor.set_relay(t, relay)
        run = self.motor.running(t)
        if run != self.running_now:
            self.running_now = run
            self.aquifer.pump(t, self.plant.pump_lpm if run else 0)
            self.aquifer.prune(t)
        return run

    def lifts(self) -> bool:
        """Water reaches the pump: the level is above its intake."""
        return self.depth() < self.s["intake_m"]

    # --- the wires
    def _bore_volts(self) -> float:
        t = self.t()
        depth = self.aquifer.depth(t)
        ma = self.bore.ma(t, max(0.0, self.s["install_m"] - depth))
        self.truth.append([self.clock.ms, round(depth, 4), round(ma, 4)])
        return ma / 1000 * BORE_SHUNT

    def _sonar_mm(self) -> float | None:
        level = self.plant.level / 1000 / self.tank_area_m2
        seen = self.probe["tank"].observe(self.t(), level)
        if seen is None:
            return None
        return TANK_HEIGHT_M * 1000 + SONAR_ABOVE_MM - seen * 1000

    def _ec_volts(self) -> float | None:
        t = self.t()
        ec = self.probe["ec"].observe(t, self.quality.ec(t))
        return None if ec is None else ec / EC_UV

    def _ph_volts(self) -> float | None:
        t = self.t()
        ph = self.probe["ph"].observe(t, self.quality.ph(t))
        if ph is None:
            return None
        temp = self.quality.temp(t)
        raw = 7 + (ph - 7) * (temp + 273.15) / (25.0 + 273.15)
        return (raw - PH_OFFSET) / PH_SLOPE
