# jkfw: the jalkal controller firmware (MicroPython). Only hal.py imports machine.
import sys

VERSION = (0, 1, 0)


def unload(name):
    """Forget the module jkfw.<name> so its code can be collected (on MicroPython:
    in CPython the host keeps using the module, and its heap is not the board's)."""
    if sys.implementation.name != "micropython":
        return
    sys.modules.pop("jkfw." + name, None)
    pkg = sys.modules.get("jkfw")
    if pkg is not None and name in pkg.__dict__:
        delattr(pkg, name)
