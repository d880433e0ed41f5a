"""sim/aquifer.py: Cooper-Jacob drawdown against the Theis well function computed
here from its series, recovery by superposition, the seasonal decline, the tank's
mass balance, quality drift, the motor, the sun, and the sensor fault models read
by the firmware's own drivers; deterministic given a seed, and the same numbers in
real MicroPython."""

import json
import math

import pytest
from conftest import REPO, firmware_files

from jkfw import loop420, motor, sensors
from jksim import aquifer

EULER = 0.5772156649015329


def theis_w(u):
    """The Theis well function W(u) = E1(u) = -gamma - ln u + sum_{n>=1}
    (-1)^(n+1) u^n / (n n!), summed until the terms vanish (u < 5 here)."""
    s = -EULER - math.log(u)
    term = 1.0
    n = 1
    while True:
        term *= u / n  # u^n / n!
        add = term / n * (1 if n % 2 else -1)
        s += add
        if abs(add) < 1e-16 * max(1.0, abs(s)):
            return s
        n += 1


def test_the_series_is_the_exponential_integral():
    # tabulated E1: E1(0.1) = 1.8229, E1(1) = 0.21938, E1(0.01) = 4.0379
    assert theis_w(0.1) == pytest.approx(1.82292, abs=1e-5)
    assert theis_w(1.0) == pytest.approx(0.219384, abs=1e-6)
    assert theis_w(0.01) == pytest.approx(4.03793, abs=1e-5)


T, S, RW, LPM = 40.0, 0.002, 0.075, 300.0


def theis_s(q_m3d, t_s, r):
    u = r * r * S / (4 * T * t_s / 86400)
    if u >= 0.05:
        return None, u  # outside where the comparison means anything
    return q_m3d / (4 * math.pi * T) * theis_w(u), u


@pytest.mark.parametrize("r", [RW, 5.0, 30.0])
def test_cooper_jacob_matches_theis_where_it_holds(r):
    a = aquifer.Aquifer(T=T, S=S, r_w=RW, static_m=15.0)
    a.pump(0, LPM)
    q = LPM * 1.44
    checked = 0
    for t in (1, 10, 60, 600, 3600, 6 * 3600, 86400, 7 * 86400):
        s_theis, u = theis_s(q, t, r)
        if u >= 0.05:
            continue
        checked += 1
        assert a.u(t, r) == pytest.approx(u)
        s = a.drawdown(t, r)
        # Cooper-Jacob drops the series' u terms: within 2.5 % for u < 0.05,
        # 0.3 % for u < 0.01
        assert s == pytest.approx(s_theis, rel=0.025 if u > 0.01 else 0.003)
    assert checked >= 3


def test_recovery_after_pumping_stops():
    a = aquifer.Aquifer(T=T, S=S, r_w=RW, static_m=15.0)
    a.pump(0, LPM)
    a.pump(4 * 3600, 0)  # four hours of pumping
    q = LPM * 1.44
    end = a.depth(4 * 3600)
    assert end == pytest.approx(15.0 + theis_s(q, 4 * 3600, RW)[0], rel=0.003)
    last = end
    for dt in (60, 600, 3600, 6 * 3600, 86400, 5 * 86400):
        t = 4 * 3600 + dt
        s = a.drawdown(t)
        # Theis recovery by superposition: the pump plus an equal injection
        want = theis_s(q, t, RW)[0] - theis_s(q, dt, RW)[0]
        assert s == pytest.approx(want, rel=0.01, abs=1e-4)
        # and the recovery-test form: s' = Q / (4 pi T) ln(t / t')
        assert s == pytest.approx(q / (4 * math.pi * T) * math.log(t / dt), rel=1e-6)
        assert a.depth(t) < last
        last = a.depth(t)
    assert a.drawdown(4 * 3600 + 30 * 86400) < 0.05
    # the water rises back: a pump restart superposes on what is left
    a.pump(40 * 86400, LPM)
    assert a.drawdown(40 * 86400 + 3600) > a.drawdown(40 * 86400)


def test_old_periods_are_forgotten_only_when_negligible():
    a = aquifer.Aquifer(T=T, S=S, r_w=RW)
    for d in range(30):
        a.pump(d * 86400 + 6 * 3600, LPM)
        a.pump(d * 86400 + 9 * 3600, 0)
    t = 30 * 86400
    before = a.drawdown(t)
    a.prune(t, eps=1e-4)
    assert len(a.periods) == 30  # a month-old 3 h run still leaves ~4 mm
    a.prune(t, eps=0.01)
    gone = 30 - len(a.periods)
    assert 10 < gone < 30
    assert a.drawdown(t) == pytest.approx(before, abs=gone * 0.01)


def test_seasonal_decline():
    a = aquifer.Aquifer(static_m=20.0, trend_m_month=0.4)
    # months of a falling water table, no pumping: 0.4 m a month
    assert a.static(0) == 20.0
    assert a.static(91.3125 * 86400) == pytest.approx(21.2)
    b = aquifer.Aquifer(static_m=20.0, annual_m=3.0, deepest_doy=150, start_doy=1)
    deepest = b.static(149 * 86400)
    assert deepest == pytest.approx(23.0, abs=1e-6)
    assert b.static(149 * 86400 + 182.625 * 86400) == pytest.approx(17.0, abs=1e-6)
    # from February to late May the table falls every week
    weeks = [b.static((31 + 7 * k) * 86400) for k in range(16)]
    assert all(x < y for x, y in zip(weeks, weeks[1:], strict=False))


def test_tank_mass_balance():
    tk = aquifer.TankModel(10000, 5000)
    flow_in = flow_out = 0.0
    for i in range(2000):
        qi = 300.0 if (i // 200) % 2 else 0.0
        qo = 120.0 + 80 * math.sin(i / 50)
        tk.step(30, qi, qo)
        flow_in += qi / 2
        flow_out += qo / 2
    assert 0 <= tk.litres <= 10000
    balance = 5000 + flow_in - flow_out - tk.overflow_l + tk.short_l
    assert tk.litres == pytest.approx(balance)
    assert tk.overflow_l > 0 and tk.short_l > 0


def test_quality_drift_and_ph_excursion():
    q = aquifer.Quality(tds_mg=350, summer_mg=150, peak_doy=140, ph=7.3,
                        excursions=((10, 12, -1.4),), start_doy=1)  # fmt: skip
    assert q.tds(139 * 86400) == pytest.approx(500)
    assert q.tds((139 + 182.625) * 86400) == pytest.approx(350)
    assert q.tds(120 * 86400) > q.tds(30 * 86400)  # rising into summer
    assert [round(q.ph(d * 86400 + 3600), 2) for d in (9, 10, 12, 13)] == [
        7.3,
        5.9,
        5.9,
        7.3,
    ]
    t = 100 * 86400
    assert q.ec25(t) * 0.64 == pytest.approx(q.tds(t))
    assert q.ec(t) == pytest.approx(q.ec25(t) * (1 + 0.02 * (q.temp(t) - 25)))


def test_motor_and_its_current_through_the_firmware_ct():
    m = aquifer.Motor(rated_a=8.0, start_delay_s=1.5, inrush_x=5, inrush_s=0.5)
    m.set_relay(100, True)
    assert not m.running(101) and m.running(101.5)
    assert m.current(101.6) == 40.0 and m.current(103) == 8.0
    rng = aquifer.Rng(3)
    cpa = 65535 / 3.9 / 30  # counts per amp: 30 A/V CT into 3.9 V full scale

    def sample(buf, n, period_us):
        aquifer.ct_samples(buf, n, m.current(now[0]), 40, cpa, rng=rng, noise=3.0)

    now = [103.0]
    ct = motor.CurrentTransformer(sample, 30.0, 3.9 / 65535, on_a=2.0, off_a=1.0)
    assert ct.read() == pytest.approx(8.0, rel=0.01) and ct.running
    m.tripped = True  # overload: the relay stays on, the motor stops
    assert ct.read() == pytest.approx(0.0, abs=0.1) and not ct.running
    w = motor.Watch()
    assert w.step(103, True, True) == motor.AGREE
    assert w.step(104, True, ct.running) == motor.AGREE
    assert w.step(110, True, ct.running) == motor.NOT_RUNNING
    m.tripped, m.bypassed = False, True
    m.set_relay(200, False)
    assert m.running(300) and m.current(300) == 8.0


def test_sun_clear_and_cloudy():
    sun = aquifer.Sun(seed=4, cloudy_days=(1,))
    assert sun.irradiance(3 * 3600) == 0 and sun.irradiance(20 * 3600) == 0
    assert sun.irradiance(12 * 3600) == pytest.approx(1000)

    def energy(day):
        return sum(sun.irradiance(day * 86400 + m * 60) for m in range(0, 1440, 10))

    ratio = energy(1) / energy(0)
    assert 0.2 <= ratio <= 0.45
    assert energy(2) == energy(0)
    assert sun.panel_volts(0) == 0 and 20 < sun.panel_volts(800) < 22
    drawn = aquifer.Sun(seed=9, p_cloudy=0.3)
    cloudy = [d for d in range(200) if drawn.cloudy(d)]
    assert 30 < len(cloudy) < 90
    assert cloudy == [d for d in range(200) if aquifer.Sun(9, p_cloudy=0.3).cloudy(d)]


def test_loop_faults_as_the_firmware_reads_them():
    F = aquifer.Fault
    a = aquifer.Aquifer(T=T, S=S, r_w=RW, static_m=18.0)
    x = aquifer.LoopTransducer(
        30.0,
        faults=[F("open", 1000, 2000), F("short", 3000, 4000), F("dry", 5000, 6000)],
        keep=True,
    )
    lp = loop420.Loop(None, 150, range_m=30.0, install_m=40.0)
    seen = {}
    for t in range(0, 7000, 250):
        got = lp.from_ma(x.ma(t, a.head_above(t, 40.0)))
        kind = x.fault_at(t).kind if x.fault_at(t) else ""
        seen.setdefault(kind, set()).add(lp.fault)
        if got is not None:
            # within the resolution of a 16-bit ADS1115 at 4.096 V over 150 ohm
            res = 30.0 * (4.096 / 32768) / 0.150 / 16
            want = 0.0 if kind == "dry" else a.head_above(t, 40.0)
            assert got == pytest.approx(want, abs=res)
    assert seen == {
        "": {sensors.OK},
        "open": {sensors.OPEN},
        "short": {sensors.SHORT},
        "dry": {sensors.OK},  # out of water reads 0 m: a level, caught by plausibility
    }
    assert [r[3] for r in x.truth[:6]] == ["", "", "", "", "open", "open"]
    assert x.truth[4][2] == 0.0 and x.truth[0][1] == pytest.approx(22.0)


def test_value_faults_and_determinism():
    F = aquifer.Fault
    faults = [F("drift", 100, 200, rate=2.0), F("stuck", 300, 400),
              F("noise", 500, 600, rate=0.5), F("dry", 700, 800)]  # fmt: skip
    s = aquifer.Sensor(faults, seed=7, dry_value=0.1, keep=True)
    assert s.observe(50, 10.0) == 10.0
    assert s.observe(100 + 86400 / 2, 10.0) == 10.0  # drift starts at 0...
    s2 = aquifer.Sensor([F("drift", 0, None, rate=2.0)])
    assert s2.observe(86400 / 2, 10.0) == pytest.approx(11.0)  # ...2 a day
    assert s.observe(300, 5.0) == 5.0 and s.observe(350, 9.0) == 5.0  # stuck
    n1 = [aquifer.Sensor(faults, seed=7).observe(550, 1.0) for _ in range(1)]
    n2 = [aquifer.Sensor(faults, seed=7).observe(550, 1.0) for _ in range(1)]
    assert n1 == n2 and n1[0] != 1.0
    assert s.observe(750, 7.2) == 0.1
    assert s.truth[-1] == (750, 7.2, 0.1, "dry")
    with pytest.raises(ValueError):
        F("melted", 0)
    r1, r2 = aquifer.Rng(42), aquifer.Rng(42)
    a = [r1.gauss() for _ in range(2000)]
    assert a == [r2.gauss() for _ in range(2000)]
    assert abs(sum(a) / len(a)) < 0.1
    assert 0.9 < math.sqrt(sum(v * v for v in a) / len(a)) < 1.1
    assert a[:5] != [aquifer.Rng(43).gauss() for _ in range(5)]


MP_SCRIPT = r"""
import json
from jksim import aquifer
a = aquifer.Aquifer(T=40.0, S=0.002, r_w=0.075, static_m=15.0, trend_m_month=0.3,
                    annual_m=2.0, start_doy=32)
a.pump(0, 300.0)
a.pump(4 * 3600, 0)
r = aquifer.Rng(11)
sun = aquifer.Sun(seed=5, p_cloudy=0.4)
q = aquifer.Quality(excursions=((3, 4, 1.2),))
x = aquifer.LoopTransducer(30.0, [aquifer.Fault("noise", 0, None, rate=0.05)], seed=2)
out = {
    "depth": [a.depth(t) for t in (600, 3600, 4 * 3600 + 600, 86400, 40 * 86400)],
    "rng": [r.next() for _ in range(5)] + [r.gauss() for _ in range(3)],
    "sun": [sun.irradiance(d * 86400 + 11 * 3600) for d in range(6)],
    "q": [q.tds(d * 86400) for d in (0, 90)] + [q.ph(3 * 86400)],
    "ma": [x.ma(t, 12.0) for t in range(5)],
}
print(json.dumps(out))
"""


def run_cpython_script():
    ns: dict = {}
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(MP_SCRIPT, ns)
    return json.loads(buf.getvalue())


@pytest.mark.micropython
def test_the_same_numbers_in_micropython(mpy):
    files = firmware_files()
    files["jksim/__init__.py"] = (REPO / "sim" / "__init__.py").read_bytes()
    files["jksim/aquifer.py"] = (REPO / "sim" / "aquifer.py").read_bytes()
    mp = json.loads(mpy.run(MP_SCRIPT, files))
    cp = run_cpython_script()
    assert mp["rng"][:5] == cp["rng"][:5]  # the integers: exactly
    for k in cp:
        assert mp[k] == pytest.approx(cp[k], rel=1e-9, abs=1e-9), k
