# `onewire` for the virtual board, with the API of MicroPython's module of that
# name (drivers/onewire: OneWire(pin), reset, readbit, readbyte, readinto,
# writebit, writebyte, write, select_rom, scan, crc8, OneWireError): the
# WebAssembly port has none. Written for the vboard over the `_onewire` stand-in
# beside it, which puts a DS18B20 on the bus; the ROM search is Maxim's (AN187).
import _onewire as _ow


class OneWireError(Exception):
    pass


class OneWire:
    SEARCH_ROM = 0xF0
    MATCH_ROM = 0x55
    SKIP_ROM = 0xCC

    def __init__(self, pin):
        self.pin = pin
        pin.init(pin.OPEN_DRAIN, pin.PULL_UP)

    def reset(self, required=False):
        ok = _ow.reset(self.pin)
        if required and not ok:
            raise OneWireError
        return ok

    def readbit(self):
        return _ow.readbit(self.pin)

    def readbyte(self):
        return _ow.readbyte(self.pin)

    def readinto(self, buf):
        for i in range(len(buf)):
            buf[i] = _ow.readbyte(self.pin)

    def writebit(self, value):
        return _ow.writebit(self.pin, value)

    def writebyte(self, value):
        return _ow.writebyte(self.pin, value)

    def write(self, buf):
        for b in buf:
            _ow.writebyte(self.pin, b)

    def select_rom(self, rom):
        self.reset()
        self.writebyte(self.MATCH_ROM)
        self.write(rom)

    def scan(self):
        """Every ROM on the bus (bytearrays of 8)."""
        found = []
        last = None  # the previous ROM found
        fork = 0  # the last bit (1-64) where that search took the 0 branch
        for _ in range(255):  # a line held low looks like ROMs without end
            rom, fork = self._search(last, fork)
            if rom is None:
                return found
            found.append(rom)
            last = rom
            if not fork:
                break
        return found

    def _search(self, last, fork):
        """One pass of SEARCH ROM: (rom, the bit of its last 0-branch fork)."""
        if not self.reset():
            return None, 0
        self.writebyte(self.SEARCH_ROM)
        rom = bytearray(8)
        new_fork = 0
        for n in range(1, 65):
            bit = self.readbit()
            comp = self.readbit()
            if bit and comp:
                return None, 0  # nobody answered
            if bit == comp:  # 0 and 0: ROMs differ here
                if n < fork:
                    bit = (last[(n - 1) // 8] >> ((n - 1) % 8)) & 1
                else:
                    bit = 1 if n == fork else 0
                if not bit:
                    new_fork = n
            self.writebit(bit)
            if bit:
                rom[(n - 1) // 8] |= 1 << ((n - 1) % 8)
        return rom, new_fork

    def crc8(self, data):
        return _ow.crc8(data)
