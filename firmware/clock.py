# The board's clock: monotonic ticks for timing, UTC for frames with a quality flag.
# The simulator swaps this module's Clock for a virtual one with the same methods.
import time

NONE, RTC, NET, GPS, HOST = 0, 1, 2, 3, 4
EPOCH_2000 = 946684800  # MicroPython ports before 1.22 count from 2000


class Utc:
    """UTC from uptime plus an offset once the time is known (shared with the sim)."""

    quality = NONE
    _offset_s = 0

    def uptime_s(self):
        raise NotImplementedError  # the board's and the simulator's clocks say

    def now(self):
        """(t, quality): UTC seconds when known, else seconds since boot."""
        up = self.uptime_s()
        if self.quality == NONE:
            return up, NONE
        return up + self._offset_s, self.quality

    def set_utc(self, utc_s, quality):
        """Set the time; returns the step (new - old, 0 when it was unknown)."""
        old, q = self.now()
        self._offset_s = utc_s - self.uptime_s()
        self.quality = quality
        return utc_s - old if q != NONE else 0


class Clock(Utc):
    def __init__(self):
        self.quality = NONE
        self._boot_ms = time.ticks_ms()
        self._offset_s = 0  # utc = uptime + offset once the clock is known
        # MicroPython >= 1.22 on the ESP32 uses the 1970 epoch; older ports 2000
        self._epoch_fix = EPOCH_2000 if time.gmtime(0)[0] == 2000 else 0

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def ticks_add(self, a, b):
        return time.ticks_add(a, b)

    def uptime_s(self):
        return time.ticks_diff(time.ticks_ms(), self._boot_ms) // 1000

    def rtc_utc(self):
        """UTC from the chip RTC if it holds a plausible time (survives soft resets)."""
        t = time.time() + self._epoch_fix
        return t if t > 1700000000 else None

    async def sleep_ms(self, ms):
        import asyncio

        await asyncio.sleep_ms(ms)

    # --- the loop: the firmware awaits only these, so a simulator can swap them
    def flag(self):
        import asyncio

        return asyncio.ThreadSafeFlag()

    async def wait(self, flag, ms):
        """True when flag was set, False after ms."""
        import asyncio

        try:
            await asyncio.wait_for_ms(flag.wait(), ms)
            return True
        except asyncio.TimeoutError:
            return False

    def spawn(self, coro):
        import asyncio

        return asyncio.create_task(coro)

    def run(self, coro):
        import asyncio

        asyncio.run(coro)
