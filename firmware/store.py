# Controller state that must survive resets: a small CRC-checked JSON file on
# internal flash, replaced atomically, with the previous copy kept as .bak.
import binascii
import json
import os

# file text: {"crc":<crc32 of S>,"n":<save count>,"state":S}
_HEAD = '{"crc":%d,"n":%d,"state":'


def defaults():
    return {
        "boots": 0,  # starts ever (the app adds one per boot)
        "epoch": 0,  # boot epoch written in frames
        "seq": 0,  # frame seq of the epoch at the checkpoint
        "pulses": [0, 0],  # cumulative source, supply pulses at the checkpoint
        "ckpt_utc": 0,  # UTC s of the checkpoint, 0 = clock unknown
        "ckpt_uptime_s": 0,  # seconds since boot at the checkpoint
        "backoff": 0,  # dry-run retry back-off level
    }


STATE = "state.json"  # in the flash root; state.tmp and state.bak beside it


def _join(a, b):
    return a + b if a.endswith("/") else a + "/" + b


class Store:
    """Persisted state in <root>/state.json (+ state.tmp while saving, state.bak).

    save() writes state.tmp, moves state.json to state.bak, then renames
    state.tmp over state.json; each file carries a save count and a CRC, and
    load() takes the newest copy that checks, so a power cut at any point
    yields either the new or the previous state, never a torn one.

    Flash writes per day, with the app saving at every reading (96 at 15 min),
    on every pump stop, lockout or mode change and at boot: about 100-110 on a
    normal day, each one ~250-byte file plus two renames. A save of an
    unchanged state writes nothing. LittleFS spreads these over its blocks:
    far below the
    flash's ~100k erase cycles over a 10-year life."""

    def __init__(self, root):
        self.path = _join(root, STATE)
        self.tmp = _join(root, "state.tmp")
        self.bak = _join(root, "state.bak")
        self.writes = 0  # saves that reached flash
        self.source = None  # file load() used: "json", "tmp", "bak" or None
        self._n = 0
        self._last = None  # body of the last save, to skip rewriting it
        self._loaded = False
        self._main_ok = False  # state.json checks: worth keeping as .bak

    def _read(self, path):
        # (n, state, body) of a file whose CRC checks, else None
        try:
            with open(path, "rb") as f:
                raw = f.read()
            k = raw.find(b',"state":')
            if raw[:7] != b'{"crc":' or k < 0:
                return None
            crc_s, n_s = raw[7:k].decode().split(',"n":')
            body = raw[k + 9 :].rstrip()[:-1]
            if int(crc_s) != binascii.crc32(body) & 0xFFFFFFFF:
                return None
            body = body.decode()
            state = json.loads(body)
            if not isinstance(state, dict):
                return None
            return int(n_s), state, body
        except (OSError, ValueError):
            return None

    def load(self):
        """The newest valid state, missing keys filled from defaults()."""
        self._loaded = True
        best = None
        for path, name in ((self.path, "json"), (self.tmp, "tmp"), (self.bak, "bak")):
            r = self._read(path)
            if name == "json":
                self._main_ok = r is not None
            if r is not None and (best is None or r[0] > best[0]):
                best = r
                self.source = name
        out = defaults()
        if best is None:
            self.source = None
            return out
        self._n, state, self._last = best
        if self.source == "tmp":
            # finish the interrupted save now, so the next one cannot
            # overwrite the only copy of this state while writing state.tmp
            try:
                self._commit()
            except OSError:
                pass
        for k in state:
            out[k] = state[k]
        return out

    def save(self, state):
        """Write state atomically; True when it is on flash. Never raises OSError."""
        if not self._loaded:
            self.load()  # continue the save count of the files already there
        body = json.dumps(state)
        if body == self._last:
            return True
        n = self._n + 1
        text = _HEAD % (binascii.crc32(body.encode()) & 0xFFFFFFFF, n) + body + "}\n"
        try:
            with open(self.tmp, "w") as f:
                f.write(text)
            self._commit()
        except OSError:
            return False
        self._n = n
        self._last = body
        self.writes += 1
        return True

    def _commit(self):
        if self._main_ok:
            self._move(self.path, self.bak)  # keep the previous good copy
        self._move(self.tmp, self.path)
        self._main_ok = True

    def _move(self, src, dst):
        try:
            os.stat(src)
        except OSError:
            return  # first save: nothing to keep
        try:
            os.rename(src, dst)
        except OSError:
            # FAT refuses to rename onto an existing file
            os.remove(dst)
            os.rename(src, dst)
