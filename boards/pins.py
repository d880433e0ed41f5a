# Board pin maps (boards/*.json): checked against what the chip can do before any pin
# is touched, so a wiring mistake is a clear message on the bench, not a field fault.

# role -> "in" (needs an input), "pull" (input that needs a pull-up: switches,
# button, open-collector meters), "out" (drives something)
ROLES = {
    "meter_source": "pull", "meter_supply": "pull",
    "sw_dry": "pull", "sw_low": "pull", "sw_high": "pull", "button": "pull",
    "mains_sense": "in", "supply_adc": "adc",
    # sensors (docs/sensors.md): analogue inputs on ADC1 only (ADC2 stops while
    # Wi-Fi runs); input-only pins suit them
    "bore_adc": "adc", "tank_adc": "adc", "ec_adc": "adc", "ph_adc": "adc",
    "ct_adc": "adc", "panel_adc": "adc", "battery_adc": "adc",
    "onewire": "io", "motor_aux": "pull", "sonar_rx": "in", "sonar_tx": "out",
    "relay": "out", "led": "out",
    "sd_sck": "out", "sd_mosi": "out", "sd_miso": "in", "sd_cs": "out",
    "i2c_sda": "out", "i2c_scl": "out",
    "modem_tx": "out", "modem_rx": "in", "modem_pwrkey": "out", "modem_rst": "out",
    "modem_power": "out", "modem_dtr": "out", "modem_flight": "out",
}  # fmt: skip
REQUIRED = ("meter_supply", "sw_dry", "sw_high", "relay", "button")

# ADC1 GPIOs per chip (ESP32: ADC1_CH0-7; S3: ADC1_CH0-9)
ADC1 = {"esp32": tuple(range(32, 40)), "esp32s3": tuple(range(1, 11))}

CHIPS = {
    # valid GPIOs, flash/PSRAM pins (unusable), input-only, strapping, boot-chatter
    "esp32": (
        tuple(range(0, 20)) + (21, 22, 23, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39),
        (6, 7, 8, 9, 10, 11),
        (34, 35, 36, 37, 38, 39),
        (0, 2, 5, 12, 15),
        (1, 3),  # UART0: the boot ROM and REPL talk here
    ),
    "esp32s3": (
        tuple(range(0, 22)) + tuple(range(26, 49)),
        (26, 27, 28, 29, 30, 31, 32),
        (),
        (0, 3, 45, 46),
        (43, 44),
    ),
}  # fmt: skip


class BoardError(ValueError):
    pass


def problems(b):
    """Every problem with board dict b, as sentences (empty list: the board is fine)."""
    out = []
    name = b.get("name", "?")
    chip = b.get("chip")
    if chip not in CHIPS:
        return ["%s: chip must be one of %s, got %r" % (name, ", ".join(CHIPS), chip)]
    valid, flash, in_only, strap, chatter = CHIPS[chip]
    pins = b.get("pins")
    if not isinstance(pins, dict):
        return ["%s: needs a 'pins' object" % name]
    ext = b.get("external_pullups", [])
    used = {}
    for role in REQUIRED:
        if pins.get(role) is None:
            out.append("%s: pin for %s is required" % (name, role))
    for role, pin in pins.items():
        if role not in ROLES:
            out.append("%s: unknown pin role %r" % (name, role))
            continue
        if pin is None:
            continue
        if not isinstance(pin, int) or isinstance(pin, bool) or pin not in valid:
            out.append("%s: %s = %r is not a GPIO of the %s" % (name, role, pin, chip))
            continue
        if pin in flash:
            out.append("%s: %s = GPIO%d is wired to the flash chip" % (name, role, pin))
        if pin in used:
            out.append(
                "%s: GPIO%d is used twice (%s and %s)" % (name, pin, used[pin], role)
            )
        used[pin] = role
        kind = ROLES[role]
        if kind == "adc" and pin not in ADC1[chip]:
            out.append(
                "%s: %s = GPIO%d is not an ADC1 pin of the %s (ADC1: GPIO%d-%d)"
                % (name, role, pin, chip, ADC1[chip][0], ADC1[chip][-1])
            )
        if kind in ("out", "io") and pin in in_only:
            out.append(
                "%s: %s = GPIO%d is input-only on the %s" % (name, role, pin, chip)
            )
        if kind == "pull" and pin in in_only and pin not in ext:
            out.append(
                "%s: %s = GPIO%d has no internal pull-up; fit an external one and list"
                " it in external_pullups" % (name, role, pin)
            )
        if role == "relay" and (pin in strap or pin in chatter):
            # a strapping or UART0 pin toggles during boot: the pump would start
            out.append(
                "%s: relay = GPIO%d glitches during boot; use another pin" % (name, pin)
            )
        if kind == "pull" and chip == "esp32" and pin == 12:
            out.append(
                "%s: %s = GPIO12 pulled up at boot selects 1.8 V flash" % (name, role)
            )
    return out


def check(b):
    """Raise BoardError listing every problem, else return b."""
    p = problems(b)
    if p:
        raise BoardError("; ".join(p))
    return b
