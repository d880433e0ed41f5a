# jkproto: the frame contract shared by the board (MicroPython) and the host (CPython).
from . import codec


def local_day(t, tz_offset_min):
    """YYYYMMDD of UTC seconds t in the local zone: the day a frame stamped t counts
    for, and the name of the board's daily log file it goes to."""
    y, m, d = codec.civil((t + tz_offset_min * 60) // 86400)
    return y * 10000 + m * 100 + d
