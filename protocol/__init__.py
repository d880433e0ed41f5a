# jkproto: the frame contract shared by the board (MicroPython) and the host (CPython).
