# jkfw: the jalkal controller firmware (MicroPython). Only hal.py imports machine.
VERSION = (0, 1, 0)
