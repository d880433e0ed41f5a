# SMS-DELIVER PDUs (3GPP TS 23.040 9.2.2.1) as AT+CMGL lists them in PDU mode: the
# sender with its type of number and the text. Loaded by sms.py only while it has
# texts to read, then dropped (a board polls its inbox far more often than a text
# comes).
from binascii import unhexlify


def _ch(v):
    # a character as ASCII: the letters, digits and punctuation commands use (the
    # codes GSM 7-bit and UCS2 share with ASCII), line breaks as spaces, else '?'
    if v == 10 or v == 13:
        return 32
    return v if 96 < v < 123 or (31 < v < 91 and v != 36 and v != 64) else 63


def _unpack7(ud, n, k=0):
    # septets k..n-1 of GSM 7-bit text packed LSB first (TS 23.038 6.1.2.1); an
    # escape (27) and the extension character after it are one '?'
    out = bytearray()
    esc = False
    while k < n:
        b = 7 * k
        i, s = b >> 3, b & 7
        v = ud[i] >> s
        if s > 1:
            v |= ud[i + 1] << (8 - s)
        v &= 127
        k += 1
        if v == 27 and not esc:
            esc = True
            continue
        out.append(63 if esc else _ch(v))
        esc = False
    return out


def deliver(hexpdu):
    """(sender, text) of an SMS-DELIVER PDU in hex (service centre first): sender
    b'+<digits>' for an international number, bare digits for any other, None for an
    alphanumeric one; the text as ASCII ('?' for other characters, b'?' for a text
    that did not arrive whole). None if it is not an SMS-DELIVER."""
    try:
        pdu = unhexlify(hexpdu)
        i = pdu[0] + 1  # past the service centre's address
        fo = pdu[i]
        n, ton = pdu[i + 1], pdu[i + 2] >> 4 & 7  # TP-OA: digits, type of number
        if fo & 3 or n > 20:
            return None  # TP-MTI 0 is SMS-DELIVER
        sender = None
        if ton != 5:  # 5: alphanumeric, never authorised
            d = bytearray()
            for o in pdu[i + 3 : i + 3 + (n + 1) // 2]:
                d.append(48 + (o & 15))
                d.append(48 + (o >> 4))
            sender = (b"+" if ton == 1 else b"") + bytes(d[:n])
            if len(d) < n or not sender.lstrip(b"+").isdigit():
                sender = None
        i += 3 + (n + 1) // 2
        dcs, udl, ud = pdu[i + 1], pdu[i + 9], pdu[i + 10 :]
        # the alphabet (TS 23.038 4): 0 GSM 7-bit, 1 8-bit, 2 UCS2, 3 not read
        # (compressed or reserved)
        g = dcs >> 4
        if g < 8:
            a = 3 if dcs & 32 else dcs >> 2 & 3
        else:
            a = dcs >> 2 & 1 if g == 15 else 2 if g == 14 else 0 if g > 11 else 3
        hl = ud[0] + 1 if fo & 64 else 0  # the user data header's octets
        if a == 0:
            if len(ud) < (7 * udl + 7) // 8:
                return sender, b"?"
            text = _unpack7(ud, udl, (8 * hl + 6) // 7)
        elif a == 3 or len(ud) < udl:
            return sender, b"?"
        elif a == 2:
            u = ud[hl:udl]
            text = bytearray(
                _ch(u[k + 1]) if u[k] == 0 else 63 for k in range(0, len(u) - 1, 2)
            )
        else:
            text = ud[hl:udl]
        return sender, bytes(text)
    except (IndexError, ValueError):
        return None
