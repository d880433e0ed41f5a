# `ds18x20` for the virtual board, with the API of MicroPython's module of that
# name (drivers/onewire: DS18X20(onewire), scan, convert_temp, read_scratch,
# write_scratch, read_temp; `buf` the scratchpad last read; a bad CRC raises
# Exception("CRC error")): the WebAssembly port has none. Written for the vboard,
# from Maxim's DS18B20/DS18S20 datasheets.
FAMILIES = (0x10, 0x22, 0x28)  # DS18S20, DS1822, DS18B20
CONVERT_T = 0x44
READ_SCRATCHPAD = 0xBE
WRITE_SCRATCHPAD = 0x4E


class DS18X20:
    def __init__(self, onewire):
        self.ow = onewire
        self.buf = bytearray(9)

    def scan(self):
        return [r for r in self.ow.scan() if r[0] in FAMILIES]

    def convert_temp(self):
        """Every sensor on the bus starts a conversion (SKIP ROM)."""
        ow = self.ow
        ow.reset(True)
        ow.writebyte(ow.SKIP_ROM)
        ow.writebyte(CONVERT_T)

    def read_scratch(self, rom):
        ow = self.ow
        ow.reset(True)
        ow.select_rom(rom)
        ow.writebyte(READ_SCRATCHPAD)
        ow.readinto(self.buf)
        if ow.crc8(self.buf):  # the CRC over all nine bytes is 0 when they are good
            raise Exception("CRC error")
        return self.buf

    def write_scratch(self, rom, buf):
        ow = self.ow
        ow.reset(True)
        ow.select_rom(rom)
        ow.writebyte(WRITE_SCRATCHPAD)
        ow.write(buf)

    def read_temp(self, rom):
        b = self.read_scratch(rom)
        if rom[0] == 0x10:  # DS18S20: 0.5 C steps, refined by COUNT_REMAIN
            raw = b[0] - 256 if b[1] else b[0]
            return (raw >> 1) - 0.25 + (b[7] - b[6]) / b[7]
        raw = b[1] << 8 | b[0]
        if raw & 0x8000:
            raw -= 0x10000
        return raw / 16
