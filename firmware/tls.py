# TLS through the SIM7600's own SSL stack, for https:// and mqtts:// uplinks (docs/
# modem.md). A board has no CA store: the server's certificate is pinned. It is a
# file on the board's flash (CERT), checked against the SHA-256 in the config before
# use, downloaded into the module once (AT+CCERTLIST, AT+CCERTDOWN; its name there
# carries the fingerprint, so a new certificate is a new file) and set as SSL
# context 0's root CA with server authentication (AT+CSSLCFG). Loaded on demand.
from binascii import hexlify
from hashlib import sha256

CERT = "/server.pem"  # jalkal deploy puts it there (host/field/layout.py)
CHUNK = 256


def _read(each):
    # each(piece) for the file in CHUNK pieces: no copy of it on the heap
    with open(CERT, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                return
            each(b)


async def setup(m):
    """SSL context 0 ready to verify the server against CERT, whose SHA-256 is
    m.pin; False (nothing sent to the server) when the file is missing or is not
    the pinned one. This module is dropped again afterwards."""
    from . import unload

    unload("tls")  # the running code stays until it returns
    pin = m.pin.encode()
    h = sha256()
    n = [0]

    def add(b):
        h.update(b)
        n[0] += len(b)

    try:
        _read(add)
    except OSError:
        return False
    if hexlify(h.digest()) != pin or not 0 < n[0] <= 10240:
        return False
    name = b"jk%s.pem" % pin[:12]
    # AT+CCERTLIST: a +CCERTLIST: "<file>" line per file, then OK (§10.2.14); not
    # found (or printed otherwise): downloaded again, which costs only data
    await m.at(b"+CCERTLIST", 5000, b'+CCERTLIST: "%s"' % name)
    if not m.info:
        # §10.2.13: "> ", the file's bytes, OK
        if not await m.at(b'+CCERTDOWN="%s",%d' % (name, n[0]), 5000, None, b">"):
            return False
        _read(m.write)
        if not await m.wait(10000):
            return False
    # §10.2.12: TLS 1.2, verify the server, this root CA, SNI (the host's name)
    for k, v in ((b"sslversion", b"3"), (b"authmode", b"1"), (b"enableSNI", b"1"),
                 (b"cacert", b'"%s"' % name)):  # fmt: skip
        if not await m.at(b'+CSSLCFG="%s",0,%s' % (k, v)):
            return False
    return True
