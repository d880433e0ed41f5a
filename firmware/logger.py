# Frame log: append-only daily files on the SD card, a ring of files on internal
# flash while the card is away, and a catch-up copy when it comes back.
import os
import struct

from jkproto import codec

RING_MAGIC = b"JKR1"
LOG_DIR = "log"  # on the card: LOG_DIR/YYYYMMDD.jkl
RING_DIR = "ring"  # on the flash: RING_DIR/NN.jkl
RING_HDR_FMT = "<4sI"  # magic, generation (orders the slots after a reboot)
RING_HDR_LEN = 8
# the largest v1 frame the firmware writes (boot, heartbeat, gap): sizes the
# ring's guaranteed window in frames
LOG_FRAME_BYTES = 41
SCAN_BYTES = 2 * codec.MAX_LEN + 2  # a whole frame of look-ahead past any offset


def _join(a, b):
    return a + b if a.endswith("/") else a + "/" + b


def _close(f):
    if f is not None:
        try:
            f.close()
        except OSError:
            pass


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


def _same(a, b):
    # memoryview == bytes is False on MicroPython; compare without allocating,
    # from the end because the CRC bytes differ first
    i = len(b)
    if len(a) != i:
        return False
    while i and a[i - 1] == b[i - 1]:
        i -= 1
    return not i


class FrameLog:
    """Append complete frames to <sd_root>/log/YYYYMMDD.jkl (day 0: nodate.jkl).

    One write + flush per frame: a power cut tears at most the frame being
    written, and appending after it is fine because readers resync. When the
    card is missing or a write fails, frames go to a ring of ring_files files
    of ring_file_bytes on flash (<flash_root>/ring/NN.jkl), oldest slot
    overwritten; frames are lost only if the card stays away longer than the
    ring holds (ring_capacity_frames frames at least; lost_frames counts
    them). retry_sd() (call it every ~10 min) copies the ring into the day's
    file, oldest first, before logging to the card again. Storage errors
    never raise: append returns False, sd_ok/mode tell the state."""

    def __init__(self, sd_root, flash_root, ring_files=8, ring_file_bytes=16384):
        if ring_files < 2 or ring_file_bytes < RING_HDR_LEN + codec.MAX_LEN:
            raise ValueError("ring too small")
        self.log_dir = _join(sd_root, LOG_DIR)
        self.ring_dir = _join(flash_root, RING_DIR)
        self.ring_files = ring_files
        self.ring_file_bytes = ring_file_bytes
        # wrapping overwrites a whole slot, so only ring_files - 1 are sure
        self.ring_capacity_frames = (ring_files - 1) * (
            (ring_file_bytes - RING_HDR_LEN) // LOG_FRAME_BYTES
        )
        self.sd_ok = False
        self.echo = None  # called with each logged frame (the board's console)
        self.lost_frames = 0  # overwritten in the ring or refused by both stores
        self._started = False
        self._day = 0
        self._sd_f = None
        self._sd_day = None
        self._gens = [None] * ring_files  # type: list  # generation per slot, None = empty
        self._slot = None  # slot being filled
        self._gen = 0
        self._ring_f = None
        self._ring_used = 0
        self._buf = bytearray(SCAN_BYTES)  # catch-up / ring scans, never per frame
        self._mv = memoryview(self._buf)

    @property
    def mode(self):
        return "sd" if self.sd_ok else "flash"

    def day_path(self, day):
        return _join(self.log_dir, ("%08d.jkl" % day) if day else "nodate.jkl")

    def ring_path(self, slot):
        return _join(self.ring_dir, "%02d.jkl" % slot)

    def start(self, day=0):
        """Find the ring's state on flash and try the card (append calls this)."""
        self._started = True
        self._day, self._slot, self._gen = day, None, 0
        try:
            os.mkdir(self.ring_dir)
        except OSError:
            pass  # exists already; a real flash fault shows up at the first write
        for i in range(self.ring_files):
            self._gens[i] = None
            try:
                with open(self.ring_path(i), "rb") as f:
                    h = f.read(RING_HDR_LEN)
            except OSError:
                continue
            # a slot torn before its header was whole counts as empty
            if len(h) == RING_HDR_LEN and h[:4] == RING_MAGIC:
                g = struct.unpack(RING_HDR_FMT, h)[1]
                self._gens[i] = g
                if self._slot is None or g > self._gen:
                    self._slot, self._gen = i, g
        self.sd_ok = self._sd_up(day)
        return self.sd_ok

    def append(self, frame, day=0):
        """Log one complete frame; True when it is on the card or in the ring."""
        if not self._started:
            self.start(day)
        self._day = day
        done = False
        if self.sd_ok:
            try:
                self._sd_open(day)
                if self._sd_f.write(frame) == len(frame):
                    self._sd_f.flush()
                    done = True
                # else the card is full: readers skip the torn bytes
            except OSError:
                pass
            if not done:
                self._sd_down()
        if not done:
            done = self._ring_write(frame)
            if not done:
                self.lost_frames += 1
        # the echo after the write: a tool's Ctrl-C tends to land while the console
        # is written, and a frame made but never logged would break its chain
        if self.echo is not None:
            self.echo(frame)
        return done

    def retry_sd(self, day=None):
        """Try the card again; on success copy the ring to it first. Returns sd_ok."""
        if day is None:
            day = self._day
        if not self._started:
            return self.start(day)
        if not self.sd_ok:
            self.sd_ok = self._sd_up(day)
        return self.sd_ok

    def ring_pending(self):
        return any(g is not None for g in self._gens)

    def files(self):
        """Paths of the card's log files, then ring slots with frames, oldest first."""
        try:
            names = sorted(n for n in os.listdir(self.log_dir) if n.endswith(".jkl"))
        except OSError:
            names = []
        out = [_join(self.log_dir, n) for n in names]
        return out + [self.ring_path(i) for i in self._ring_order()]

    def close(self):
        _close(self._sd_f)
        _close(self._ring_f)
        self._sd_f = self._ring_f = self._sd_day = None

    # --- SD card

    def _sd_open(self, day):
        if self._sd_f is not None and self._sd_day == day:
            return
        _close(self._sd_f)
        self._sd_f = None
        try:
            os.mkdir(self.log_dir)
        except OSError:
            pass  # exists, or the card is missing: open() below tells which
        self._sd_f = open(self.day_path(day), "ab")
        self._sd_day = day

    def _sd_down(self):
        _close(self._sd_f)
        self._sd_f = self._sd_day = None
        self.sd_ok = False

    def _sd_up(self, day):
        try:
            self._sd_open(day)
            if self.ring_pending():
                self._catch_up(day)
            return True
        except OSError:
            self._sd_down()
            return False

    def _catch_up(self, day):
        f = self._sd_f
        f.flush()
        # the card file's last complete frame: where an interrupted catch-up,
        # or a write that failed after reaching the card, stopped
        tail = None
        size = _size(self.day_path(day))
        if size:
            with open(self.day_path(day), "rb") as r:
                r.seek(max(0, size - SCAN_BYTES))
                n = r.readinto(self._buf)
            for off, k in codec.scan(self._buf, 0, n):
                tail = self._mv[off : off + k]
            if tail is not None:
                tail = bytes(tail)
        skip = False
        order = self._ring_order()
        if tail is not None:
            for i in order:
                for fr in self._frames(i):
                    if _same(fr, tail):
                        skip = True  # frames up to it are already on the card
        for i in order:
            for fr in self._frames(i):
                if skip:
                    skip = not _same(fr, tail)
                elif f.write(fr) != len(fr):
                    raise OSError(28)  # ENOSPC: the ring stays, retried later
            f.flush()
        self._ring_clear(order)

    # --- flash ring

    def _ring_order(self):
        used = [i for i in range(self.ring_files) if self._gens[i] is not None]
        return sorted(used, key=lambda i: self._gens[i])

    def _frames(self, slot):
        """Yield each frame of a ring slot (a view into _buf, valid until next)."""
        buf, mv = self._buf, self._mv
        have = 0
        eof = False
        with open(self.ring_path(slot), "rb") as f:
            f.seek(RING_HDR_LEN)
            while not eof or have:
                if not eof:
                    n = f.readinto(mv[have:])
                    eof = not n
                    have += n or 0
                # decide at off only with a whole frame of look-ahead (or at EOF)
                lim = have if eof else have - codec.MAX_LEN
                off = 0
                while off < lim:
                    k = codec.frame_len(buf, off, have)
                    if k:
                        yield mv[off : off + k]
                        off += k
                    else:
                        off += 1
                if eof:
                    return
                buf[: have - off] = buf[off:have]
                have -= off

    def _ring_clear(self, order):
        # oldest first: if power fails half way, what is left is the newest
        # part, whose last frame matches the card's tail and is skipped
        _close(self._ring_f)
        self._ring_f = None
        for i in order:
            try:
                os.remove(self.ring_path(i))
            except OSError:
                pass
            self._gens[i] = None
        self._slot = None
        self._gen = 0
        self._ring_used = 0

    def _ring_next(self):
        _close(self._ring_f)
        self._ring_f = None
        nxt = 0 if self._slot is None else (self._slot + 1) % self.ring_files
        if self._gens[nxt] is not None:
            try:
                for _ in self._frames(nxt):
                    self.lost_frames += 1
            except OSError:
                pass
        self._gens[nxt] = None
        f = self._ring_f = open(self.ring_path(nxt), "wb")
        self._gen += 1
        f.write(struct.pack(RING_HDR_FMT, RING_MAGIC, self._gen))
        f.flush()
        self._slot = nxt
        self._gens[nxt] = self._gen
        self._ring_used = RING_HDR_LEN

    def _ring_write(self, frame):
        n = len(frame)
        try:
            if self._ring_f is None and self._slot is not None:
                p = self.ring_path(self._slot)
                self._ring_f = open(p, "ab")
                self._ring_used = _size(p)  # also counts bytes of a failed write
            if self._slot is None or self._ring_used + n > self.ring_file_bytes:
                self._ring_next()
            w = self._ring_f.write(frame)
            self._ring_f.flush()
            if w != n:
                raise OSError(28)
            self._ring_used += n
            return True
        except OSError:
            _close(self._ring_f)
            self._ring_f = None
            return False
