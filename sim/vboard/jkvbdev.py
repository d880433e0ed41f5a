"""Parts on the virtual board's buses, at the level of their datasheets: a TI
ADS1115 on I2C (register by register) and a Maxim DS18B20 on 1-Wire (time slot by
time slot, behind the `_onewire` stand-in). Their inputs (volts, degrees) come
from the sensors' plant (jkvbsense); loaded by machine and _onewire on first use.

ADS1115 (TI SBAS444D): an address pointer register (9.6.1: P[1:0] selects
conversion 00, config 01, Lo_thresh 10, Hi_thresh 11), 16-bit registers written
MSB first after the pointer byte and read MSB first from the pointed register
(9.5.3). Config (9.6.3, reset 8583h): OS[15] written 1 starts a single conversion
and reads 0 while one is under way, 1 when idle; MUX[14:12] (000 AIN0-AIN1,
001 AIN0-AIN3, 010 AIN1-AIN3, 011 AIN2-AIN3, 1xx AINx-GND); PGA[11:9] (+-6.144,
4.096, 2.048, 1.024, 0.512, 0.256 V); MODE[8] (1 single-shot, 0 continuous);
DR[7:5] (8 ... 860 SPS). A conversion takes 1/DR (9.4.2.1); its result is the
input over LSB = FSR / 2^15, clipped to 7FFFh / 8000h past full scale (9.3.3).
Lo_thresh resets to 8000h, Hi_thresh to 7FFFh.

DS18B20 (Maxim 19-7487): a 64-bit ROM (family 28h, 48-bit serial, CRC8), the
ROM commands SEARCH ROM F0h (bit, complement, the master's choice), READ ROM 33h,
MATCH ROM 55h, SKIP ROM CCh, and the functions CONVERT T 44h (750 ms at 12 bits;
read slots give 0 while converting, 1 when done), READ SCRATCHPAD BEh (9 bytes:
temperature LSB/MSB, TH, TL, config, FFh, 0Ch, 10h, CRC), WRITE SCRATCHPAD 4Eh
(TH, TL, config). It powers up with 85 C (0550h) in its scratchpad: 50 05 4B 46
7F FF 0C 10 1C. A missing probe (or an open data wire) gives no presence pulse
and reads 1s; a data line shorted to ground gives a "presence" and reads 0s."""

import jkvb

VB = jkvb.VB
FSR = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)
SPS = (8, 16, 32, 64, 128, 250, 475, 860)
MUX = ((0, 1), (0, 3), (1, 3), (2, 3), (0, None), (1, None), (2, None), (3, None))


def _ms():
    return VB.now() * 1000


class Ads1115:
    def __init__(self, volts):
        self.volts = volts  # channel -> V at the input (against GND)
        self.ptr = 0
        self.reg = [0x0000, 0x8583, 0x8000, 0x7FFF]
        self.done_ms = 0.0  # the single-shot conversion under way ends then
        self.busy = False

    def _convert(self):
        c = self.reg[1]
        a, b = MUX[(c >> 12) & 7]
        v = self.volts(a) - (self.volts(b) if b is not None else 0.0)
        code = int(v / FSR[(c >> 9) & 7] * 32768)
        code = 32767 if code > 32767 else -32768 if code < -32768 else code
        self.reg[0] = code & 0xFFFF
        jkvb.stats["ads_conversions"] += 1

    def _settle(self):
        if self.busy and _ms() >= self.done_ms:
            self.busy = False
            self._convert()

    def write(self, data):
        """Bytes after the address byte: the pointer, then a register's MSB, LSB."""
        if not data:
            return
        self._settle()
        self.ptr = data[0] & 3
        if len(data) < 3 or self.ptr == 0:  # the conversion register is read-only
            return
        v = (data[1] << 8) | data[2]
        if self.ptr != 1:
            self.reg[self.ptr] = v
            return
        self.reg[1] = v & 0x7FFF
        if v & 0x100 == 0:  # continuous: converting all the time
            self.busy = False
            self._convert()
        elif v & 0x8000 and not self.busy:  # OS = 1 in power-down: one conversion
            self.busy = True
            self.done_ms = _ms() + 1000 / SPS[(v >> 5) & 7]

    def read(self, buf):
        self._settle()
        r = self.reg[self.ptr]
        if self.ptr == 0 and not self.reg[1] & 0x100:
            self._convert()  # continuous mode: the latest conversion
            r = self.reg[0]
        if self.ptr == 1:
            r = self.reg[1] | (0 if self.busy or not r & 0x100 else 0x8000)
        for i in range(len(buf)):
            buf[i] = (r >> 8) & 0xFF if i % 2 == 0 else r & 0xFF


# --- 1-Wire


def crc8(data):
    """Dallas/Maxim CRC8 (x^8 + x^5 + x^4 + 1, LSB first), as _onewire.crc8."""
    crc = 0
    for b in data:
        for _ in range(8):
            mix = (crc ^ b) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            b >>= 1
    return crc


def rom_of(serial):
    rom = bytearray(8)
    rom[0] = 0x28
    for i in range(6):
        rom[1 + i] = (serial >> (8 * i)) & 0xFF
    rom[7] = crc8(rom[:7])
    return bytes(rom)


class DS18B20:
    """One DS18B20 on the bus; temp() -> C or None (no probe), short() -> True
    while the data line is held low."""

    CONVERT_MS = 750

    def __init__(self, temp, short, serial=0x0000A1B2C3D4):
        self.temp = temp
        self.short = short
        self.rom = rom_of(serial)
        self.pad = bytearray(b"\x50\x05\x4b\x46\x7f\xff\x0c\x10\x1c")
        self.state = "idle"
        self.bits_in = 0
        self.nin = 0
        self.out = []  # bits to send, LSB first
        self.conv_ms = None  # the conversion under way ends then
        self.search_i = 0
        self.want = 0  # bytes of WRITE SCRATCHPAD still to take

    def present(self):
        return self.temp() is not None or self.short()

    # --- the master's side
    def reset(self):
        if self.short():
            return True  # a line held low looks like a presence pulse
        if self.temp() is None:
            self.state = "idle"
            return False
        self.state = "rom"
        self.out = []
        self.nin = self.bits_in = 0
        return True

    def read_bit(self):
        if self.short():
            return 0
        if self.temp() is None or self.state in ("idle", "off"):
            return 1
        if self.state == "search":
            return self._search_read()
        if self.out:
            return self.out.pop(0)
        if self.conv_ms is not None:  # a read slot during CONVERT T
            if _ms() < self.conv_ms:
                return 0
            self._finish()
        return 1

    def write_bit(self, b):
        if self.short() or self.temp() is None or self.state in ("idle", "off"):
            return
        if self.state == "search":
            self._search_write(b)
            return
        self.bits_in |= (1 if b else 0) << self.nin
        self.nin += 1
        limit = 64 if self.state == "match" else 8
        if self.nin == limit:
            v = self.bits_in
            self.bits_in = self.nin = 0
            self._take(v)

    # --- commands
    def _send(self, data):
        for byte in data:
            for i in range(8):
                self.out.append((byte >> i) & 1)

    def _take(self, v):
        st = self.state
        if st == "rom":
            if v == 0x33:  # READ ROM
                self._send(self.rom)
                self.state = "func"
            elif v == 0x55:  # MATCH ROM: 64 bits follow
                self.state = "match"
            elif v == 0xCC:  # SKIP ROM
                self.state = "func"
            elif v == 0xF0:  # SEARCH ROM
                self.state = "search"
                self.search_i = 0
                self.search_phase = 0
            else:
                self.state = "off"
        elif st == "match":
            ok = all(((v >> (8 * i)) & 0xFF) == self.rom[i] for i in range(8))
            self.state = "func" if ok else "off"
        elif st == "func":
            if v == 0x44:  # CONVERT T
                self._finish()  # an earlier one, if it ran its time
                self.conv_ms = _ms() + self.CONVERT_MS
            elif v == 0xBE:  # READ SCRATCHPAD
                if self.conv_ms is not None and _ms() >= self.conv_ms:
                    self._finish()
                self._send(self.pad)
            elif v == 0x4E:  # WRITE SCRATCHPAD: TH, TL, config
                self.state = "wpad"
                self.want = 3
            self.state = self.state if v == 0x4E else "done"
        elif st == "wpad":
            self.pad[5 - self.want] = v if self.want > 1 else (v & 0x60) | 0x1F
            self.want -= 1
            if not self.want:
                self.pad[8] = crc8(self.pad[:8])
                self.state = "done"

    def _finish(self):
        if self.conv_ms is None or _ms() < self.conv_ms:
            return
        self.conv_ms = None
        t = self.temp()
        if t is None:
            return
        raw = int(t * 16 + (0.5 if t >= 0 else -0.5)) & 0xFFFF  # 12 bits: 1/16 C
        self.pad[0] = raw & 0xFF
        self.pad[1] = raw >> 8
        self.pad[8] = crc8(self.pad[:8])

    def _search_bit(self):
        return (self.rom[self.search_i // 8] >> (self.search_i % 8)) & 1

    def _search_read(self):
        if self.search_phase == 2:
            return 1  # no read expected now
        b = self._search_bit()
        r = b if self.search_phase == 0 else 1 - b
        self.search_phase += 1
        return r

    def _search_write(self, b):
        if (1 if b else 0) != self._search_bit():
            self.state = "off"  # the master went the other way
            return
        self.search_i += 1
        self.search_phase = 0
        if self.search_i == 64:
            self.state = "func"
