# Virtual time for the firmware: the same methods as jkfw.clock.Clock, driven by a
# scheduler that jumps to the next deadline when every task sleeps. Runs under
# CPython and MicroPython (plain coroutines and a heap; no asyncio).
import heapq

from jkfw.clock import NONE, Utc

TICKS_PERIOD = 1 << 30  # MicroPython's ticks_ms wraps here; so do these


class _Sleep:
    def __init__(self, ms):
        self.ms = ms

    def __await__(self):
        return (yield self)

    __iter__ = __await__


class _Wait:
    def __init__(self, flag, ms):
        self.flag = flag
        self.ms = ms

    def __await__(self):
        return (yield self)

    __iter__ = __await__


class VFlag:
    """ThreadSafeFlag stand-in: set() from an 'IRQ' wakes one waiting task."""

    def __init__(self, clock):
        self.clock = clock
        self.is_set = False
        self.waiter = None

    def set(self):
        if self.waiter is not None:  # hand the event to the waiting task
            task, token = self.waiter
            self.waiter = None
            self.clock.wake(task, token, True)
        else:
            self.is_set = True


class Task:
    def __init__(self, coro, name):
        self.coro = coro
        self.name = name
        self.token = 0
        self.done = False


class VirtualClock(Utc):
    def __init__(self, start_utc=None, quality=2):
        self.ms = 0  # virtual milliseconds since the simulation began (not wrapped)
        self.boot_ms = 0  # when the board last booted
        self.quality = NONE
        self._offset_s = 0
        if start_utc is not None:
            self._offset_s = start_utc
            self.quality = quality
        self._rtc = start_utc  # a battery-backed RTC keeps UTC across reboots
        self._utc0 = start_utc
        self._heap = []  # (due_ms, seq, kind, payload)
        self._seq = 0
        self.tasks = []
        self.failures = []

    # --- the Clock interface
    def ticks_ms(self):
        return self.ms % TICKS_PERIOD

    def ticks_diff(self, a, b):
        half = TICKS_PERIOD // 2
        return ((a - b + half) % TICKS_PERIOD) - half

    def ticks_add(self, a, b):
        return (a + b) % TICKS_PERIOD

    def uptime_s(self):
        return (self.ms - self.boot_ms) // 1000

    def rtc_utc(self):
        return None if self._rtc is None else self._rtc + self.ms // 1000

    def reboot(self, rtc=True):
        """The board starts again: uptime from 0, the clock unknown until set (from
        the RTC if it has one and rtc is True)."""
        self.stop()
        self.boot_ms = self.ms
        self.quality = NONE
        self._offset_s = 0
        if not rtc:
            self._rtc = None

    def sleep_ms(self, ms):
        return _Sleep(max(0, int(ms)))

    def wait(self, flag, ms):
        return _Wait(flag, max(0, int(ms)))

    def flag(self):
        return VFlag(self)

    def spawn(self, coro, name="task"):
        t = Task(coro, name)
        self.tasks.append(t)
        self._push(self.ms, "step", (t, t.token, None))
        return t

    # --- the scheduler
    def _push(self, due, kind, payload):
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, kind, payload))

    def wake(self, task, token, value):
        """Resume task now with value (a flag set from an IRQ); token: the wait it
        was in (a stale wake of an earlier wait is dropped)."""
        self._push(self.ms, "step", (task, token, value))

    def at(self, ms, fn):
        """Call fn() at virtual time ms (the plant and fault injection use this)."""
        self._push(max(ms, self.ms), "call", fn)

    def _step(self, task, value):
        try:
            req = task.coro.send(value)
        except StopIteration:
            task.done = True
            return
        except Exception as e:  # a crashed task is a finding, not a hang
            task.done = True
            self.failures.append((task.name, e))
            return
        task.token += 1
        if isinstance(req, _Sleep):
            self._push(self.ms + req.ms, "step", (task, task.token, None))
        elif isinstance(req, _Wait):
            if req.flag.is_set:
                req.flag.is_set = False
                self._push(self.ms, "step", (task, task.token, True))
            else:
                req.flag.waiter = (task, task.token)
                self._push(self.ms + req.ms, "timeout", (task, task.token, req.flag))
        else:
            raise TypeError("firmware awaited %r; only clock.sleep_ms/wait" % (req,))

    def run_until(self, ms):
        """Run every task and call due before ms, then stop the clock at ms."""
        while self._heap and self._heap[0][0] <= ms:
            due, _seq, kind, payload = heapq.heappop(self._heap)
            self.ms = due
            if kind == "call":
                payload()
            elif kind == "step":
                task, token, value = payload
                if token == task.token and not task.done:
                    self._step(task, value)
            else:  # timeout of a wait
                task, token, flag = payload
                if token == task.token and not task.done:
                    if flag.waiter is not None and flag.waiter[0] is task:
                        flag.waiter = None
                    self._step(task, False)
        self.ms = max(self.ms, ms)

    def stop(self):
        """Power loss: every task is gone, pending calls stay (the plant goes on)."""
        for t in self.tasks:
            t.done = True
            try:
                t.coro.close()
            except Exception:
                pass
        self.tasks = []
        self._heap = [e for e in self._heap if e[2] == "call"]
        heapq.heapify(self._heap)
