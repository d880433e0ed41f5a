// Run one MicroPython script in the real MicroPython WebAssembly port.
//
// Input: a JSON manifest on stdin:
//   {"script": "<source>", "files": [["path", "<base64>"], ...], "steps": ["<source>"...],
//    "heapsize": <int|null>, "cwd": "/flash", "romfs": "<base64 image>"|null}
// Relative file paths are relative to cwd (a fresh, empty folder); parent
// folders are created. stdout/stderr carry exactly what the script printed.
// Exit codes: 0 ok (also sys.exit() / sys.exit(0)); 1 uncaught exception
// (traceback on stderr) or an unretrieved asyncio task exception; n for
// sys.exit(n); 70 harness failure ("run.mjs: ..." on stderr).
// fds 1/2 are written with fs.writeSync only (process.stdout is never touched,
// so the pipes stay blocking and no output is lost on exit).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MP_JS = path.join(
  HERE,
  "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs",
);
const EX_HARNESS = 70;

function harnessFail(msg) {
  fs.writeSync(2, `run.mjs: ${msg}\n`);
  process.exit(EX_HARNESS);
}

class Sink {
  constructor(fd) {
    this.fd = fd;
    this.buf = Buffer.alloc(8192);
    this.len = 0;
    this.seen = [];
  }
  put(bytes) {
    for (const b of bytes) {
      if (this.len === this.buf.length) this.flush();
      this.buf[this.len++] = b;
      if (b === 10) this.flush();
    }
  }
  flush() {
    let off = 0;
    while (off < this.len) {
      off += fs.writeSync(this.fd, this.buf, off, this.len - off);
    }
    if (this.fd === 2) this.seen.push(Buffer.from(this.buf.subarray(0, this.len)));
    this.len = 0;
  }
}

// Exit status for a SystemExit traceback, like CPython: no/None/0 -> 0,
// int n -> n, anything else -> 1 (its text is already in the traceback).
function systemExitCode(message) {
  const m = /SystemExit: ?(.*)\n?$/.exec(message);
  const arg = m ? m[1].trim() : "";
  if (arg === "" || arg === "None") return 0;
  return /^-?\d+$/.test(arg) ? Number(arg) & 0xff : 1;
}

let manifest;
try {
  manifest = JSON.parse(fs.readFileSync(0, "utf8"));
} catch (e) {
  harnessFail(`cannot read the JSON manifest on stdin: ${e.message}`);
}
if (typeof manifest.script !== "string") harnessFail("manifest.script missing");

let loadMicroPython;
try {
  ({ loadMicroPython } = await import(MP_JS));
} catch (e) {
  harnessFail(`cannot load ${MP_JS} (run: bash .ci/install-wasm.sh): ${e.message}`);
}

const out = new Sink(1);
const err = new Sink(2);
const options = {
  stdout: (b) => out.put(b),
  stderr: (b) => err.put(b),
  linebuffer: false,
};
if (manifest.heapsize) options.heapsize = manifest.heapsize;
const mp = await loadMicroPython(options);

const cwd = manifest.cwd || "/flash";
try {
  mp.FS.mkdirTree(cwd);
  mp.FS.chdir(cwd);
  for (const [name, b64] of manifest.files || []) {
    const full = path.posix.resolve(cwd, name);
    mp.FS.mkdirTree(path.posix.dirname(full));
    mp.FS.writeFile(full, Buffer.from(b64, "base64"));
  }
} catch (e) {
  harnessFail(`cannot prepare the file system: ${e.message}`);
}

// manifest.romfs: a ROMFS image (as `mpremote romfs build` makes), placed in memory
// outside MicroPython's heap, as a board's romfs partition is mapped from flash,
// mounted at /rom and put on sys.path after the others, as a board does at boot.
if (manifest.romfs) {
  try {
    const img = Buffer.from(manifest.romfs, "base64");
    const raw = mp._module._malloc(img.length + 4096);
    const at = (raw + 4095) & ~4095; // aligned as a flash partition is
    mp._module.HEAPU8.set(img, at);
    mp.runPython(
      "import sys, uctypes, vfs\n" +
        `vfs.mount(vfs.VfsRom(uctypes.bytearray_at(${at}, ${img.length})), "/rom")\n` +
        'sys.path.extend(("/rom", "/rom/lib"))\n' +
        "del sys, uctypes, vfs",
    );
  } catch (e) {
    harnessFail(`cannot mount the ROMFS image: ${(e && e.message) || e}`);
  }
}

process.on("exit", () => {
  out.flush();
  err.flush();
  // Background asyncio tasks that died only print; make that a failure.
  const text = Buffer.concat(err.seen).toString("utf8");
  if (process.exitCode === 0 && text.includes("Task exception wasn't retrieved")) {
    process.exitCode = 1;
  }
});

process.exitCode = 0;
// manifest.steps: more scripts run after the first, each in its own runPython call
// in the same interpreter. gc.collect() frees only what calls before the previous
// one dropped: recent garbage is still reachable from the WebAssembly stack.
for (const src of [manifest.script, ...(manifest.steps || [])]) {
  try {
    mp.runPython(src);
  } catch (e) {
    if (e && e.name === "PythonError") {
      out.flush();
      if (e.type === "SystemExit") {
        process.exitCode = systemExitCode(e.message);
        if (process.exitCode !== 0) err.put(Buffer.from(e.message));
      } else {
        err.put(Buffer.from(e.message));
        process.exitCode = 1;
      }
    } else {
      out.flush();
      err.flush();
      harnessFail(`MicroPython runtime failure: ${(e && e.stack) || e}`);
    }
    break;
  }
}
// Node exits when pending asyncio tasks (JS timers) are done.
