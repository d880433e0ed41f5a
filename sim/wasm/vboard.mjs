// The virtual board: real MicroPython (the WebAssembly port) behind a byte stream,
// speaking the REPL the way a board's UART does.
//
//   node vboard.mjs --fs DIR [--board NAME] [--chip ESP32] [--frozen DIR]
//                   [--pins JSON] [--speed N] [--clock host|none|MS] [--card yes|no]
//                   [--romfs FILE]
//
// stdin: bytes from the serial port; stdout: bytes to the serial port (the host side,
// `jalkal vboard`, puts a pseudo-terminal in front of both). stderr: "vboard: ..." lines
// for the host ("vboard: ready" once the board has booted).
//
// How it maps to a board (ports/esp32/main.c and shared/runtime/pyexec.c, v1.27-v1.29):
// - The REPL is MicroPython's own event-driven pyexec (friendly REPL, raw REPL, paste
//   mode), fed one byte at a time. Raw paste (`\x05A\x01`, what mpremote uses) is read
//   here with the board's flow control (window size, then `\x01` per window) and then
//   fed to the raw REPL, because the WebAssembly port cannot block on stdin.
// - Ctrl-C while code runs: a second thread reads the serial input and, like the
//   board's UART interrupt, calls mp_sched_keyboard_interrupt() when the byte is the
//   interrupt character. For that the interpreter's memory is made a shared
//   WebAssembly.Memory and a second instance of the same module (without its data
//   segments) runs those two C functions on it from the reader thread.
// - Soft reset (Ctrl-D at an empty prompt, sys.exit()): "MPY: soft reboot", a fresh
//   interpreter, boot.py, main.py in the friendly REPL, and the REPL mode kept.
// - Flash: the board's "/" is the host folder --fs. It is copied into every fresh
//   interpreter, and every change is written through at once (a file when it is
//   flushed or closed, mkdir/rmdir/remove/rename when they happen).
// - Hardware (--frozen DIR: sim/vboard): `machine`, `time`, `asyncio` and `jkvb` (the
//   simulated plant) are copied to a folder the board does not list (/.vboard) and
//   imported before boot.py, so they are found as a board's built-ins are. The SD
//   card is the host folder DIR/sd (kept in /.sdcard, mounted at /sd by os.mount of
//   a machine.SDCard, as on a board; --card no: no card in the slot).
// - Time: ticks, sleeps, poll timeouts and the RTC run --speed times faster than the
//   host's clock (the RTC starts at the host's UTC time, 2000-01-01 with --clock
//   none, or the Unix time MS in ms with --clock MS). The watchdog (machine.WDT)
//   counts host time: a board that stops feeding it resets (reset cause WDT), also at
//   the REPL, as an ESP32 does.
// - ROMFS (--romfs FILE): a MicroPython built with ROMFS and a 128 KB partition named
//   romfs (ports/esp32/partitions-4MiB-romfs.csv), its bytes kept in FILE (erased,
//   0xff, when new). vfs.rom_ioctl(2, 0) gives what an ESP32's does, an
//   esp32.Partition (ioctl 4/5/6: block count, block size, erase; readblocks,
//   writeblocks, which like NOR flash only clear bits), and at every start a valid
//   image is mounted at /rom with "/rom" and "/rom/lib" on sys.path (py/runtime.c
//   mp_init, extmod/vfs.c). The image sits outside the heap, as a mapped partition.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PKG = path.join(HERE, "node_modules/@micropython/micropython-webassembly-pyscript");
const MP_JS = path.join(PKG, "micropython.mjs");
const MP_WASM = path.join(PKG, "micropython.wasm");
const PASTE_WINDOW = 512; // raw-paste flow-control window (a board: 128)
const FLASH_BLOCKS = 512; // 4 KB blocks in os.statvfs("/"): 2 MB, not enforced
const BUILTIN_DIR = "/.vboard"; // the built-in modules (--frozen)
const CARD_DIR = "/.sdcard"; // the SD card's files (the host's DIR/sd)
const CARD_HOST = "sd";
// Emscripten's own folders, the built-ins and the card: not on the board's flash
const HIDDEN = new Set(["dev", "proc", BUILTIN_DIR.slice(1), CARD_DIR.slice(1), CARD_HOST]);

function say(msg) {
  try {
    fs.writeSync(2, `vboard: ${msg}\n`);
  } catch {
    // host went away
  }
}

function die(msg) {
  say(msg);
  process.exit(70);
}

function parseArgs(argv) {
  const opts = {
    fs: null,
    board: "",
    chip: "ESP32",
    frozen: null,
    pins: "{}",
    speed: "1",
    clock: "host",
    card: "yes",
    romfs: "",
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in opts) || i + 1 >= argv.length) die(`bad argument ${argv[i]}`);
    opts[key] = argv[++i];
  }
  if (!opts.fs) die("--fs DIR is required");
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const HOST_ROOT = path.resolve(opts.fs);
if (!fs.statSync(HOST_ROOT, { throwIfNoEntry: false })?.isDirectory()) {
  die(`${HOST_ROOT} is not a folder`);
}
const SPEED = Number(opts.speed);
if (!(SPEED > 0 && SPEED <= 1e6)) die(`bad --speed ${opts.speed}`);
// --clock: the RTC starts at the host's UTC, unset (2000-01-01), or at MS (Unix ms)
const CLOCK_MS = /^[0-9]+$/.test(opts.clock) ? Number(opts.clock) : null;
if (CLOCK_MS === null && !["host", "none"].includes(opts.clock)) {
  die(`bad --clock ${opts.clock}`);
}
const CARD = opts.card === "yes";
const CARD_HOST_DIR = path.join(HOST_ROOT, CARD_HOST); // made when the board writes
const ROMFS_FILE = opts.romfs ? path.resolve(opts.romfs) : null;
const ROMFS_SIZE = 0x20000; // partitions-4MiB-romfs.csv
const ROMFS_BLOCK = 4096;
let romAt = 0; // where the partition is in the running interpreter's memory

// --- the board's clock and the state that outlives an interpreter -------------------

// Board time runs SPEED times faster than the host's. ticks_ms counts from the last
// hard reset (a soft reset keeps it, as on an ESP32); the RTC keeps going across all
// resets.
const REAL0 = performance.now();
const boardMs = () => SPEED * (performance.now() - REAL0);
let ticksBase = 0;
let utcAtZero =
  CLOCK_MS !== null ? CLOCK_MS : opts.clock === "none" ? Date.UTC(2000, 0, 1) : Date.now();
let wdt = null; // { timeout, fed } in host ms, once machine.WDT started it
let pendingReset = null; // "hard" after machine.reset()
const NAP_MS = Math.max(0.1, Math.min(1, 50 / SPEED)); // host ms per idle nap

const wdtExpired = () => wdt !== null && performance.now() - wdt.fed > wdt.timeout;
// The watchdog's deadline (Date.now() ms, 0: off) for the watchdog thread
const WDT_DEADLINE = new Float64Array(new SharedArrayBuffer(8));
const wdtShare = () => {
  WDT_DEADLINE[0] = wdt ? Date.now() + wdt.timeout : 0;
};

class BoardReset extends Error {
  constructor(kind) {
    super(`board reset (${kind})`);
    this.kind = kind;
  }
}

// What the MicroPython side (sim/vboard/jkvb.py, machine.py) reads and keeps here.
// Numbers cross as seconds (a JavaScript integer beyond 32 bits would not).
const VB = {
  speed: SPEED,
  chip: opts.chip,
  pins: opts.pins,
  resetCause: 1, // machine.PWRON_RESET
  rtcMem: "", // hex; survives soft and watchdog resets, not power loss
  plant: "", // JSON of jkvb.Plant
  now: () => boardMs() / 1000,
  utc: () => (utcAtZero + boardMs()) / 1000,
  setUtc: (s) => {
    utcAtZero = Number(s) * 1000 - boardMs();
  },
  wdtArm: (ms) => {
    wdt = { timeout: Number(ms), fed: performance.now() };
    wdtShare();
  },
  wdtFeed: () => {
    if (wdt) wdt.fed = performance.now();
    wdtShare();
  },
  wdtTimeout: () => (wdt ? wdt.timeout : 0),
  requestReset: (kind) => {
    pendingReset = String(kind);
  },
};
// the romfs partition (--romfs): erase a block, write (AND) bytes the board passes
// by address, each change written through to FILE at once
function romPersist(off, n) {
  const fd = fs.openSync(ROMFS_FILE, "r+");
  try {
    fs.writeSync(fd, Buffer.from(new Uint8Array(memory.buffer, romAt + off, n)), 0, n, off);
  } finally {
    fs.closeSync(fd);
  }
}
VB.romErase = (block) => {
  new Uint8Array(memory.buffer, romAt + block * ROMFS_BLOCK, ROMFS_BLOCK).fill(0xff);
  romPersist(block * ROMFS_BLOCK, ROMFS_BLOCK);
};
VB.romWrite = (off, src, n) => {
  const heap = new Uint8Array(memory.buffer);
  for (let i = 0; i < n; i++) heap[romAt + off + i] &= heap[src + i];
  romPersist(off, n);
};
globalThis.jkvb = VB;

// --- the module, with its memory made shared -------------------------------------

function leb(d, i) {
  let r = 0;
  let s = 0;
  let b;
  do {
    b = d[i++];
    r += (b & 0x7f) * 2 ** s;
    s += 7;
  } while (b & 0x80);
  return [r, i];
}

function encLeb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function sections(bytes) {
  const out = [];
  let i = 8;
  while (i < bytes.length) {
    const id = bytes[i];
    const [size, start] = leb(bytes, i + 1);
    out.push({ id, head: i, start, end: start + size });
    i = start + size;
  }
  return out;
}

// The module with its one memory imported as env.memory (shared) instead of defined;
// dropData: also without data segments (an instance that must not re-initialise it).
function patchWasm(bytes, dropData) {
  const secs = sections(bytes);
  const memSec = secs.find((s) => s.id === 5);
  const impSec = secs.find((s) => s.id === 2);
  if (!memSec || !impSec) throw new Error("unexpected module layout");
  let [count, i] = leb(bytes, memSec.start);
  if (count !== 1) throw new Error("module has more than one memory");
  const flags = bytes[i++];
  let min;
  let max = 65536;
  [min, i] = leb(bytes, i);
  if (flags & 1) [max, i] = leb(bytes, i);
  const [nimp, impBody] = leb(bytes, impSec.start);
  const name = (s) => [...encLeb(s.length), ...Buffer.from(s)];
  const entry = [...name("env"), ...name("memory"), 2, 3, ...encLeb(min), ...encLeb(max)];
  const impContent = Buffer.concat([
    Buffer.from(encLeb(nimp + 1)),
    bytes.subarray(impBody, impSec.end),
    Buffer.from(entry),
  ]);
  const parts = [bytes.subarray(0, 8)];
  for (const s of secs) {
    if (s.id === 5 || (dropData && (s.id === 11 || s.id === 12))) continue;
    if (s.id === 2) {
      parts.push(Buffer.from([2, ...encLeb(impContent.length)]), impContent);
    } else {
      parts.push(bytes.subarray(s.head, s.end));
    }
  }
  return { bytes: Buffer.concat(parts), min, max };
}

let loadMicroPython;
let mainMod;
let irqMod;
let memLimits;
try {
  ({ loadMicroPython } = await import(MP_JS));
  const raw = fs.readFileSync(MP_WASM);
  const main = patchWasm(raw, false);
  memLimits = { initial: main.min, maximum: main.max, shared: true };
  mainMod = new WebAssembly.Module(main.bytes);
  irqMod = new WebAssembly.Module(patchWasm(raw, true).bytes);
} catch (e) {
  die(`cannot load MicroPython from ${PKG} (run: bash .ci/install-wasm.sh): ${e.message}`);
}

// Emscripten's libc numbers errors like WASI (ENOENT is 44); MicroPython on a board,
// its `errno` module, and mpremote use the Linux numbers (ENOENT is 2). The system
// calls' results are translated, so OSError.errno matches errno.ENOENT as on a board.
const WASI_TO_LINUX = [
  0, 7, 13, 98, 99, 97, 11, 114, 9, 74, 16, 125, 10, 103, 111, 104, 35, 89, 33, 122, 17, 14,
  27, 113, 43, 84, 115, 4, 22, 5, 106, 21, 40, 24, 31, 90, 72, 36, 100, 102, 101, 23, 105,
  19, 2, 8, 37, 67, 12, 42, 92, 28, 38, 107, 20, 39, 131, 88, 95, 25, 6, 75, 130, 1, 32, 71,
  93, 91, 34, 30, 29, 3, 116, 110, 26, 18, 76,
];
const linuxErrno = (e) => WASI_TO_LINUX[e] ?? e;

function translateErrors(imports) {
  const done = new Set();
  for (const ns of Object.values(imports)) {
    for (const [name, f] of Object.entries(ns)) {
      if (typeof f !== "function" || done.has(f)) continue;
      let g = null;
      if (name.startsWith("__syscall_")) {
        g = (...a) => {
          const r = f(...a);
          return r < 0 && r > -4096 ? -linuxErrno(-r) : r;
        };
      } else if (name.startsWith("fd_")) {
        g = (...a) => linuxErrno(f(...a));
      }
      if (g) {
        ns[name] = g;
        done.add(g);
      }
    }
  }
}

let memory = null; // the running interpreter's memory
const NAP = new Int32Array(new SharedArrayBuffer(4));
let onTicks = () => {};
let onSync = () => {};
const realInstantiate = WebAssembly.instantiate;
WebAssembly.instantiate = async (_binary, imports) => {
  memory = new WebAssembly.Memory(memLimits);
  imports.env.memory = memory;
  translateErrors(imports);
  if (imports.env.mp_js_ticks_ms) {
    // time.sleep() and select.poll() spin on the clock in this port; a board sleeps.
    // Many reads in the same host millisecond mean a wait: give the CPU back a moment.
    // The watchdog, when it has run out, resets the board from here (the stack of
    // the interpreter is abandoned, as a chip reset abandons it).
    let prev = -1;
    let same = 0;
    imports.env.mp_js_ticks_ms = () => {
      onTicks();
      if (wdtExpired()) throw new BoardReset("wdt");
      const real = Math.floor(performance.now());
      if (real !== prev) {
        prev = real;
        same = 0;
      } else if (++same > 20) {
        Atomics.wait(NAP, 0, 0, NAP_MS);
        same = 0;
      }
      return Math.floor(boardMs() - ticksBase) % 4294967296;
    };
    imports.env.mp_js_time_ms = () => Math.floor(utcAtZero + boardMs());
  }
  const wasi = imports.wasi_snapshot_preview1;
  if (wasi?.fd_sync) {
    // flush() of a file fsyncs it: that is when a board's card or flash has the bytes
    const sync = wasi.fd_sync;
    wasi.fd_sync = (fd) => {
      const r = sync(fd);
      onSync(fd);
      return r;
    };
  }
  const instance = await realInstantiate(mainMod, imports);
  return { instance, module: mainMod };
};

// --- serial output -------------------------------------------------------------

function writeAll(fd, buf, len) {
  let off = 0;
  while (off < len) {
    try {
      off += fs.writeSync(fd, buf, off, len - off);
    } catch (e) {
      if (e.code !== "EAGAIN") throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
    }
  }
}

class Out {
  constructor() {
    this.buf = Buffer.alloc(8192);
    this.len = 0;
    this.since = 0; // time of the oldest unflushed byte
    this.hook = null; // while set, bytes go to hook(b) instead of the port
  }
  put(b) {
    if (this.hook) this.hook(b);
    else this.raw(b);
  }
  raw(b) {
    if (this.len === 0) this.since = performance.now();
    this.buf[this.len++] = b;
    if (b === 10 || this.len === this.buf.length) this.flush();
    else if (performance.now() - this.since > 20) this.flush();
  }
  text(s) {
    for (const b of Buffer.from(s, "latin1")) this.raw(b);
  }
  flush() {
    if (this.len) writeAll(1, this.buf, this.len);
    this.len = 0;
  }
  capture(fn) {
    // run fn with the output collected; returns [fn's result, bytes]
    const got = [];
    const prev = this.hook;
    this.hook = (b) => got.push(b);
    try {
      return [fn(), Buffer.from(got)];
    } finally {
      this.hook = prev;
    }
  }
}

const out = new Out();
onTicks = () => {
  if (out.len && performance.now() - out.since > 20) out.flush();
};

// --- flash: the host folder, written through ---------------------------------------

function hostPath(p) {
  const rel = path.posix.normalize(p).replace(/^\/+/, "");
  if (!rel || rel === "." || rel.startsWith("..")) return null;
  const parts = rel.split("/");
  if (CARD && parts[0] === CARD_DIR.slice(1)) parts[0] = CARD_HOST; // the card
  else if (HIDDEN.has(parts[0])) return null;
  return path.join(HOST_ROOT, ...parts);
}

function copyIn(FS, hostDir, boardDir) {
  for (const ent of fs.readdirSync(hostDir, { withFileTypes: true })) {
    if (ent.name.startsWith(".jkvb-") || ent.name === "__pycache__") continue;
    const h = path.join(hostDir, ent.name);
    const b = path.posix.join(boardDir, ent.name);
    if (ent.isDirectory()) {
      FS.mkdir(b);
      copyIn(FS, h, b);
    } else if (ent.isFile()) {
      FS.writeFile(b, fs.readFileSync(h));
    }
  }
}

function loadFlash(FS, hostDir, boardDir) {
  for (const ent of fs.readdirSync(hostDir, { withFileTypes: true })) {
    if (boardDir === "/" && HIDDEN.has(ent.name)) continue;
    if (ent.name.startsWith(".jkvb-")) continue; // our own temp files
    const h = path.join(hostDir, ent.name);
    const b = path.posix.join(boardDir, ent.name);
    if (ent.isDirectory()) {
      FS.mkdir(b);
      loadFlash(FS, h, b);
    } else if (ent.isFile()) {
      FS.writeFile(b, fs.readFileSync(h));
    }
  }
}

function writeThrough(FS) {
  const abs = (p) => path.posix.resolve(FS.cwd(), p);
  const mirror = (what, fn) => {
    try {
      fn();
    } catch (e) {
      say(`flash: ${what}: ${e.message}`);
    }
  };
  const saveFile = (p) => {
    const h = hostPath(p);
    if (!h) return;
    mirror(`write ${p}`, () => {
      const tmp = path.join(HOST_ROOT, `.jkvb-${process.pid}.tmp`);
      fs.writeFileSync(tmp, FS.readFile(p));
      fs.mkdirSync(path.dirname(h), { recursive: true }); // the card's first file
      fs.renameSync(tmp, h);
    });
  };
  const wrap = (name, after) => {
    const orig = FS[name];
    FS[name] = function (...a) {
      const r = orig.apply(this, a);
      after(r, ...a);
      return r;
    };
  };
  wrap("open", (stream, p, flags) => {
    // O_WRONLY/O_RDWR, O_CREAT, O_TRUNC, O_APPEND: a file that may change
    if (typeof flags === "number" && flags & (3 | 64 | 512 | 1024)) stream.jkWrite = true;
  });
  wrap("close", (_r, stream) => {
    if (stream.jkWrite && stream.path) saveFile(stream.path);
  });
  onSync = (fd) => {
    const stream = FS.getStream(fd);
    if (stream?.jkWrite && stream.path) saveFile(stream.path);
  };
  wrap("mkdir", (_r, p) => {
    const h = hostPath(abs(p));
    if (h) mirror(`mkdir ${p}`, () => fs.mkdirSync(h, { recursive: true }));
  });
  wrap("rmdir", (_r, p) => {
    const h = hostPath(abs(p));
    if (h) mirror(`rmdir ${p}`, () => fs.rmSync(h, { recursive: true, force: true }));
  });
  wrap("unlink", (_r, p) => {
    const h = hostPath(abs(p));
    if (h) mirror(`remove ${p}`, () => fs.rmSync(h, { force: true }));
  });
  wrap("rename", (_r, a, b) => {
    const ha = hostPath(abs(a));
    const hb = hostPath(abs(b));
    if (ha && hb) mirror(`rename ${a}`, () => fs.renameSync(ha, hb));
  });
  wrap("truncate", (_r, p) => {
    if (typeof p === "string") saveFile(abs(p));
  });
  // The board's "/" lists only its files.
  const readdir = FS.readdir;
  FS.readdir = function (p) {
    const names = readdir.call(this, p);
    return abs(p) === "/" ? names.filter((n) => !HIDDEN.has(n)) : names;
  };
}

// --- the reader thread: the UART receive interrupt -----------------------------------

const READER = `
const { parentPort, workerData, receiveMessageOnPort } = require("node:worker_threads");
const fs = require("node:fs");
const mod = workerData.irqMod;
const imports = {};
for (const imp of WebAssembly.Module.imports(mod)) {
  if (imp.kind === "function") {
    (imports[imp.module] ||= {})[imp.name] = () => { throw new Error("not for the reader"); };
  }
}
let irq = null;
const buf = Buffer.alloc(4096);
const pause = new Int32Array(new SharedArrayBuffer(4));
for (;;) {
  let n;
  try {
    n = fs.readSync(0, buf, 0, buf.length, null);
  } catch (e) {
    if (e.code === "EAGAIN") { Atomics.wait(pause, 0, 0, 5); continue; }
    if (e.code === "EOF") n = 0; else throw e;
  }
  // The host side is gone: stop, even if the interpreter is busy running main.py.
  if (n === 0) process.kill(process.pid, "SIGTERM");
  let m;
  while ((m = receiveMessageOnPort(parentPort))) {
    const mem = m.message.memory;
    irq = mem ? new WebAssembly.Instance(mod, { ...imports, env: { ...imports.env, memory: mem } }).exports : null;
  }
  let start = 0;
  for (let i = 0; i < n; i++) {
    if (irq && buf[i] === irq.mp_hal_get_interrupt_char()) {
      if (i > start) parentPort.postMessage({ data: Buffer.from(buf.subarray(start, i)) });
      irq.mp_sched_keyboard_interrupt();
      start = i + 1;
    }
  }
  if (n > start) parentPort.postMessage({ data: Buffer.from(buf.subarray(start, n)) });
}
`;

// --- the board -------------------------------------------------------------------

const EXIT = "exit";

// Runs a file of the board's flash in __main__, as pyexec_file() does.
function RUN_FILE(name) {
  return `
def _vb_run(name):
    import micropython
    g = __import__("__main__").__dict__
    with open(name) as f:
        code = compile(f.read(), name, "exec")
    g["__file__"] = name
    micropython.kbd_intr(3)
    try:
        exec(code, g)
    finally:
        micropython.kbd_intr(-1)

try:
    _vb_run(${JSON.stringify(name)})
finally:
    del _vb_run
`;
}

// What a board's os module has and the WebAssembly port's lacks: ilistdir entries
// with the file size (littlefs gives (name, type, 0, size); mpremote's `ls` shows it)
// and os.uname(). Run in every fresh interpreter; leaves no names in __main__.
function boardShims(machine) {
  return `
def _vb_shims():
    import os, sys
    from collections import namedtuple

    ilistdir, stat = os.ilistdir, os.stat

    def board_ilistdir(path="."):
        base = path if path else "."
        for ent in ilistdir(path):
            name, kind = ent[0], ent[1]
            size = 0
            if kind == 0x8000:
                sep = b"/" if isinstance(name, bytes) else "/"
                try:
                    size = stat(base + name if base[-1:] == sep else base + sep + name)[6]
                except OSError:
                    pass
            yield (name, kind, 0, size)

    os.ilistdir = board_ilistdir

    def board_stat(path):
        # littlefs takes "" for the working folder (mpremote cp a b : asks)
        return stat(path if path else ".")

    os.stat = board_stat

    def used(path):
        n = 0
        for ent in ilistdir(path):
            p = path + "/" + ent[0] if path != "/" else "/" + ent[0]
            n += used(p) if ent[1] == 0x4000 else (stat(p)[6] + 4095) // 4096
        return n + 1

    statvfs, mount, umount = os.statvfs, os.mount, os.umount
    mounts = []  # mount points other than "/" (an SD card at /sd)

    def board_mount(obj, path, **kw):
        mount(obj, path, **kw)
        mounts.append(path.rstrip("/"))

    def board_umount(path):
        umount(path)
        p = path if isinstance(path, str) else None
        if p is not None and p.rstrip("/") in mounts:
            mounts.remove(p.rstrip("/"))
        elif p is None:
            mounts.clear()

    def board_statvfs(path):
        a = path if path.startswith("/") else os.getcwd().rstrip("/") + "/" + path
        for m in mounts:
            if a == m or a.startswith(m + "/"):
                return statvfs(path)  # the card's own figures
        # the ESP32's 2 MB flash partition (4 MB module), as littlefs reports it
        stat(path)
        free = max(0, ${FLASH_BLOCKS} - used("/"))
        return (4096, 4096, ${FLASH_BLOCKS}, free, free, 0, 0, 0, 0, 255)

    os.statvfs = board_statvfs
    os.mount = board_mount
    os.umount = board_umount
    u = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))(
        "esp32", "esp32", "%d.%d.%d" % sys.implementation.version[:3],
        sys.version.split("; MicroPython ")[-1], ${JSON.stringify(machine)})
    os.uname = lambda: u

_vb_shims()
del _vb_shims
`;
}

// sys.modules["vfs"]: the built-in's names with the board's rom_ioctl, or (None) as a
// stock ESP32 build has it: no ROMFS (MICROPY_VFS_ROM is 0 in ports/esp32), so
// neither rom_ioctl nor VfsRom (the WebAssembly port has both)
const VFS_AS = `
def _vb_vfs(rom_ioctl):
    import sys, vfs

    class Vfs:
        pass

    m = Vfs()
    drop = ("rom_ioctl",) if rom_ioctl else ("rom_ioctl", "VfsRom")
    for k in dir(vfs):
        if not k.startswith("__") and k not in drop:
            setattr(m, k, getattr(vfs, k))
    if rom_ioctl:
        m.rom_ioctl = rom_ioctl
    sys.modules["vfs"] = m
`;

// Without --romfs: a stock build's vfs
const NO_ROMFS = VFS_AS + "_vb_vfs(None)\ndel _vb_vfs\n";

// vfs with an ESP32's rom_ioctl over the partition at AT (sys.modules["vfs"]: the
// built-in's own names and this one), and /rom mounted as mp_init() does
function ROMFS_SHIM(at, size, block) {
  return `${VFS_AS}
def _vb_romfs():
    import js, sys, uctypes, vfs

    vb = js.jkvb
    mem = uctypes.bytearray_at(${at}, ${size})

    def span(o, n):
        if o < 0 or n < 0 or o + n > ${size}:
            raise OSError(22)

    class Partition(memoryview):  # an ESP32's has the buffer protocol too
        def ioctl(self, op, arg):
            if op == 4:
                return ${size / block}
            if op == 5:
                return ${block}
            if op == 6:
                span(arg * ${block}, ${block})
                vb.romErase(arg)
            return 0

        def readblocks(self, n, buf, off=0):
            o = n * ${block} + off
            span(o, len(buf))
            buf[:] = mem[o : o + len(buf)]

        def writeblocks(self, n, buf, off=0):
            o = n * ${block} + off
            span(o, len(buf))
            vb.romWrite(o, uctypes.addressof(buf), len(buf))

        def __repr__(self):
            return "<Partition type=1, subtype=143, address=1966080, size=${size}, label=romfs, encrypted=0>"

    part = Partition(mem)

    def rom_ioctl(op, *args):
        if op == 1:
            return 1
        if op == 2:
            return part
        return -22

    _vb_vfs(rom_ioctl)
    try:
        vfs.mount(vfs.VfsRom(part), "/rom")
        sys.path.extend(("/rom", "/rom/lib"))
    except Exception:
        pass  # no image there: not mounted, as on a board

_vb_romfs()
del _vb_romfs, _vb_vfs
`;
}

// The vboard's built-ins (sim/vboard), imported before boot.py from a folder that is
// not on sys.path: `import machine` etc. then find them in sys.modules, as a board
// finds its built-in and frozen modules; sys.path stays a board's.
const BUILTINS = `
def _vb_builtins():
    import sys
    path = sys.path
    sys.path = [${JSON.stringify(BUILTIN_DIR)}]
    try:
        import time, asyncio, machine
    finally:
        sys.path = path

_vb_builtins()
del _vb_builtins
`;

const ROM_BOOT =
  "ets Jul 29 2019 12:21:46\r\n\r\nrst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n";

const BANNER_RE = /^(MicroPython [^;\r\n]*); [^\r\n]*/m;

class Board {
  constructor(reader) {
    this.reader = reader;
    this.mp = null;
    this.raw = false; // raw REPL (survives a soft reset, as pyexec_mode_kind does)
    this.rawLen = 0; // bytes in the raw REPL's line
    this.held = []; // a possible raw-paste request being read
    this.paste = null;
    this.machine = `jalkal vboard${opts.board ? ` (${opts.board})` : ""} with ${opts.chip}`;
  }

  banner(bytes) {
    return Buffer.from(bytes.toString("latin1").replace(BANNER_RE, `$1; ${this.machine}`), "latin1");
  }

  // The chip's side of a reset of the given kind: "power" (power-on), "soft"
  // (soft reset; machine.reset() asked for a hard one), "hard" or "wdt".
  reset(kind) {
    this.held = [];
    this.paste = null;
    this.rawLen = 0;
    if (kind === "soft") {
      VB.resetCause = 5; // SOFT_RESET; the watchdog keeps running, as on an ESP32
      out.text("MPY: soft reboot\r\n");
    } else {
      // a chip reset: uptime from 0, watchdog off, pins and REPL as at power-on
      VB.resetCause = { power: 1, hard: 2, wdt: 3 }[kind];
      const t = Math.floor(boardMs() - ticksBase);
      ticksBase = boardMs();
      wdt = null;
      wdtShare();
      this.raw = false;
      if (kind === "wdt") {
        out.text(
          `\r\nE (${t}) task_wdt: Task watchdog got triggered. The following ` +
            `tasks/users did not reset the watchdog in time:\r\nE (${t}) task_wdt:  - ` +
            "mpy_machine_wdt\r\n",
        );
        say("watchdog reset");
      }
      if (kind !== "power") out.text(ROM_BOOT);
    }
    out.flush();
  }

  // Like ports/esp32/main.c: a fresh interpreter, boot.py, then main.py if the REPL
  // is the friendly one, then the REPL. A watchdog reset or machine.reset() while
  // they run starts it all again.
  async start(kind) {
    for (;;) {
      if (kind === "soft" && pendingReset) kind = pendingReset;
      pendingReset = null;
      this.reset(kind);
      try {
        await this.fresh();
        let ret = this.runFile("boot.py");
        if (ret !== EXIT && !this.raw && ret !== 0) ret = this.runFile("main.py");
        if (ret === EXIT) {
          kind = "soft";
          continue;
        }
        this.repl();
        return;
      } catch (e) {
        if (!(e instanceof BoardReset)) throw e;
        kind = e.kind;
      }
    }
  }

  repl() {
    const mp = this.mp;
    out.capture(() => mp.replInit()); // friendly REPL; its banner comes below
    if (this.raw) {
      out.capture(() => mp.replProcessChar(1));
      this.rawLen = 0;
      out.text("raw REPL; CTRL-B to exit\r\n>");
    } else {
      const [, got] = out.capture(() => mp.replProcessChar(2));
      for (const b of this.banner(got).subarray(2)) out.raw(b); // no leading \r\n
    }
    out.flush();
  }

  async fresh() {
    // A board's text output is "cooked": every \n leaves the UART as \r\n.
    let last = 0;
    const cooked = (b) => {
      for (const c of b) {
        if (c === 10 && last !== 13) out.put(13);
        out.put(c);
        last = c;
      }
    };
    this.cooked = cooked;
    const mp = await loadMicroPython({ stdout: cooked, stderr: cooked, linebuffer: false });
    this.mp = mp;
    this.reader.postMessage({ memory });
    watchdog.postMessage({ memory });
    const FS = mp.FS;
    for (const d of ["/tmp", "/home/web_user", "/home"]) {
      try {
        FS.rmdir(d);
      } catch {
        // not there
      }
    }
    loadFlash(FS, HOST_ROOT, "/");
    if (CARD) {
      FS.mkdir(CARD_DIR);
      if (fs.existsSync(CARD_HOST_DIR)) copyIn(FS, CARD_HOST_DIR, CARD_DIR);
    }
    if (opts.frozen) {
      FS.mkdir(BUILTIN_DIR);
      copyIn(FS, opts.frozen, BUILTIN_DIR);
    }
    writeThrough(FS);
    FS.chdir("/");
    mp.runPython(boardShims(this.machine));
    mp.runPython(ROMFS_FILE ? this.romfs(mp) : NO_ROMFS);
    if (opts.frozen) mp.runPython(BUILTINS);
  }

  // The romfs partition in this interpreter's memory, read from FILE (made erased
  // when missing); the code that gives its vfs.rom_ioctl and mounts /rom.
  romfs(mp) {
    let bytes = fs.existsSync(ROMFS_FILE) ? fs.readFileSync(ROMFS_FILE) : null;
    if (!bytes || bytes.length !== ROMFS_SIZE) {
      bytes = Buffer.alloc(ROMFS_SIZE, 0xff);
      fs.writeFileSync(ROMFS_FILE, bytes);
    }
    const raw = mp._module._malloc(ROMFS_SIZE + ROMFS_BLOCK);
    romAt = (raw + ROMFS_BLOCK - 1) & ~(ROMFS_BLOCK - 1);
    new Uint8Array(memory.buffer).set(bytes, romAt);
    return ROMFS_SHIM(romAt, ROMFS_SIZE, ROMFS_BLOCK);
  }

  // pyexec_file_if_exists(): 1 when the file is absent or ran, 0 after an uncaught
  // exception (printed, as a board does), EXIT after SystemExit (a soft reset).
  // Ctrl-C interrupts it (micropython.kbd_intr, as pyexec sets it).
  runFile(name) {
    try {
      this.mp.FS.stat(`/${name}`);
    } catch {
      return 1;
    }
    try {
      this.mp.runPython(RUN_FILE(name));
      return 1;
    } catch (e) {
      if (!e || e.name !== "PythonError") throw e;
      if (e.type === "SystemExit") return EXIT;
      if (wdtExpired()) throw new BoardReset("wdt"); // the watchdog ran out meanwhile
      // the traceback without the frames of the code that ran the file
      const text = e.message.replace(/^(Traceback[^\n]*\n)(  File "<stdin>"[^\n]*\n)+/, "$1");
      this.cooked(Buffer.from(text));
      return 0;
    }
  }

  // One byte from the port; a Promise when it caused a soft reset.
  input(b) {
    if (this.paste) return this.pasteByte(b);
    if (this.held.length) {
      this.held.push(b);
      if (this.held.length === 2 && b === 0x41) return undefined; // \x05A: wait for \x01
      const held = this.held;
      this.held = [];
      if (held.length === 3 && b === 1) return this.startPaste();
      for (const c of held) {
        const r = this.feed(c);
        if (r) return r;
      }
      return undefined;
    }
    if (this.raw && this.rawLen === 0 && b === 5) {
      this.held.push(b);
      return undefined;
    }
    return this.feed(b);
  }

  feed(b) {
    let r;
    if (this.raw) {
      if (b === 2) {
        this.raw = false;
        const [res, got] = out.capture(() => this.mp.replProcessChar(b));
        for (const c of this.banner(got)) out.raw(c);
        r = res;
      } else {
        if (b === 1 || b === 3 || b === 4) this.rawLen = 0;
        else this.rawLen++;
        r = this.mp.replProcessChar(b);
      }
    } else if (b === 1 || b === 2) {
      const [res, got] = out.capture(() => this.mp.replProcessChar(b));
      const text = got.toString("latin1");
      if (b === 1 && text.endsWith("raw REPL; CTRL-B to exit\r\n>")) {
        this.raw = true;
        this.rawLen = 0;
      }
      for (const c of b === 2 ? this.banner(got) : got) out.raw(c);
      r = res;
    } else {
      r = this.mp.replProcessChar(b);
    }
    return r ? this.start("soft") : undefined;
  }

  startPaste() {
    // the board's answer: command understood, window size, one window free
    out.text("R\x01");
    out.raw(PASTE_WINDOW & 0xff);
    out.raw(PASTE_WINDOW >> 8);
    out.raw(1);
    out.flush();
    this.paste = { chunks: [], cur: [], left: PASTE_WINDOW };
    return undefined;
  }

  pasteByte(b) {
    const p = this.paste;
    if (b === 3 || b === 4) {
      this.paste = null;
      out.raw(4); // end seen
      if (b === 3) {
        out.text("\x04Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n\x04>");
        return undefined;
      }
      p.chunks.push(Buffer.from(p.cur));
      let code = Buffer.concat(p.chunks);
      if (code.length === 0) code = Buffer.from("\n");
      out.flush();
      // The collected code goes to the raw REPL as if typed there; its "OK" is not
      // part of the raw-paste answer.
      for (const c of code) {
        this.mp.replProcessChar(c);
      }
      let skip = 2;
      const prev = out.hook;
      out.hook = (c) => {
        if (skip > 0) skip--;
        else out.raw(c);
      };
      let r;
      try {
        r = this.mp.replProcessChar(4);
      } finally {
        out.hook = prev;
      }
      this.rawLen = 0;
      return r ? this.start("soft") : undefined;
    }
    p.cur.push(b);
    if (p.cur.length >= 65536) {
      p.chunks.push(Buffer.from(p.cur));
      p.cur = [];
    }
    if (--p.left === 0) {
      out.raw(1); // another window free
      out.flush();
      p.left = PASTE_WINDOW;
    }
    return undefined;
  }
}

// --- main loop -------------------------------------------------------------------

const reader = new Worker(READER, { eval: true, workerData: { irqMod } });

// The watchdog thread: code that hangs without reading the clock (where the clock
// import would reset the board) gets a KeyboardInterrupt when the watchdog has run
// out; the board resets as soon as the interpreter gives control back.
const WATCHDOG = `
const { parentPort, workerData, receiveMessageOnPort } = require("node:worker_threads");
const mod = workerData.irqMod;
const deadline = new Float64Array(workerData.deadline);
const imports = {};
for (const imp of WebAssembly.Module.imports(mod)) {
  if (imp.kind === "function") {
    (imports[imp.module] ||= {})[imp.name] = () => { throw new Error("not for the watchdog"); };
  }
}
let irq = null;
let fired = 0;
const pause = new Int32Array(new SharedArrayBuffer(4));
for (;;) {
  Atomics.wait(pause, 0, 0, 50);
  let m;
  while ((m = receiveMessageOnPort(parentPort))) {
    const mem = m.message.memory;
    irq = mem ? new WebAssembly.Instance(mod, { ...imports, env: { ...imports.env, memory: mem } }).exports : null;
    fired = 0;
  }
  const d = deadline[0];
  // once per expiry, a little after it (the clock import usually resets first)
  if (irq && d > 0 && Date.now() > d + 200 && fired !== d) {
    fired = d;
    irq.mp_sched_keyboard_interrupt();
  }
}
`;
const watchdog = new Worker(WATCHDOG, {
  eval: true,
  workerData: { irqMod, deadline: WDT_DEADLINE.buffer },
});
watchdog.unref();
const board = new Board(reader);
const queue = [];
let busy = false;

// A reset of the chip (watchdog, machine.reset()) while the REPL runs code: what
// was on its way in is lost, as in a board's UART buffer.
async function chipReset(kind) {
  queue.length = 0;
  await board.start(kind);
}

async function pump() {
  if (busy) return;
  busy = true;
  try {
    while (queue.length) {
      const chunk = queue[0];
      let reset = null;
      while (chunk.off < chunk.data.length) {
        let r;
        try {
          r = board.input(chunk.data[chunk.off++]);
          if (r) await r;
        } catch (e) {
          if (!(e instanceof BoardReset)) throw e;
          reset = e.kind;
          break;
        }
      }
      if (reset) await chipReset(reset);
      else queue.shift();
    }
    out.flush();
  } catch (e) {
    out.flush();
    die(`MicroPython runtime failure: ${(e && e.stack) || e}`);
  } finally {
    busy = false;
  }
}

reader.on("message", (m) => {
  queue.push({ data: m.data, off: 0 });
  pump();
});
reader.on("error", (e) => die(`reader failed: ${e.message}`));

// The port is there before the board boots (as a USB-serial chip's is): main.py may
// run for ever, and only a Ctrl-C from the port stops it.
busy = true;
say("ready");
await board.start("power");
busy = false;
pump();

// The watchdog also runs while the board sits at the REPL (nothing feeds it there).
setInterval(() => {
  if (busy || !wdtExpired()) return;
  busy = true;
  chipReset("wdt")
    .catch((e) => die(`MicroPython runtime failure: ${(e && e.stack) || e}`))
    .finally(() => {
      busy = false;
      pump();
    });
}, 50);
