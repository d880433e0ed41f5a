# MQTT through the SIM7600's own client (AT+CMQTT...), for uplink_url mqtt://HOST:PORT
# (mqtts://: over TLS, the server's certificate pinned, tls.py): a batch is
# published with QoS 1 on the device's up topic and the server's JSON answer comes
# back on its ack topic (jkproto.link, docs/uplink.md), read as over HTTP. The
# broker login: the device id and a password derived from its key
# (jkproto.codec.mqtt_password). Loaded only for an mqtt(s):// uplink. Same calls
# as the modem's HTTP ones.
from .modem import fields


class Mqtt:
    def __init__(self, modem, device, signer=None):
        self.m = modem
        self.signer = signer  # the device key's (codec.Signer): the password
        # jkproto.link.UP_TOPIC and ACK_TOPIC, spelt out (a module costs heap);
        # tests/test_link.py holds these to link's
        self.up = b"jalkal/v1/%s/up" % device  # device: its id, 8 hex digits
        self.ack = b"jalkal/v1/%s/ack" % device
        self.cid = b"jk" + device

    async def _put(self, cmd, data):
        # a command whose data follows its '>' prompt
        m = self.m
        if await m.at(cmd % len(data), 5000, None, b">"):
            m.write(data)
            return await m.wait(5000)
        return False

    async def _urc(self, cmd, want, ms=30000):
        # cmd's OK, then its result line "+X: 0,0" (0: success)
        m = self.m
        return (
            await m.at(cmd, 5000) and await m.wait(ms, want) and m.line.endswith(b",0")
        )

    async def http_start(self, url):
        m = self.m
        s = url[4] == 115  # mqtts://
        if s:
            from .tls import setup

            if not await setup(m):
                return False
        await m.at(b"+CMQTTSTART", 5000)  # ERROR: already started
        # server type 1: SSL/TLS (§16.2.3); ERROR: the client is there already
        await m.at(b'+CMQTTACCQ=0,"%s"%s' % (self.cid, b",1" if s else b""))
        # the address is tcp:// with TLS too (§16.2.9); user name and password
        c = b'+CMQTTCONNECT=0,"tcp://%s",60,1' % url[7 + s :]
        if self.signer:
            from jkproto.codec import mqtt_password

            c += b',"%s","%s"' % (self.cid[2:], mqtt_password(self.signer))
        return (
            (not s or await m.at(b"+CMQTTSSLCFG=0,0"))  # cleared by a failed CONNECT
            and await self._urc(c, b"+CMQTTCON")
            and await self._put(b"+CMQTTSUBTOPIC=0,%d,1", self.ack)
            and await self._urc(b"+CMQTTSUB=0", b"+CMQTTSUB:")
        )

    async def post(self, n, send):
        """Publish n bytes written by send(write); 200 when an answer came (in
        self.m.body: uplink.verdict decides from its signed numbers alone), None
        without one."""
        m = self.m
        m.blen = 0
        if not (
            await self._put(b"+CMQTTTOPIC=0,%d", self.up)
            and await m.at(b"+CMQTTPAYLOAD=0,%d" % n, 5000, None, b">")
        ):
            return None
        send(m.write)
        if not (await m.wait(5000) and await m.at(b"+CMQTTPUB=0,1,60", 5000)):
            return None
        # +CMQTTPUB: 0,0 (published) and the answer (+CMQTTRXSTART, TOPIC, one or
        # more +CMQTTRXPAYLOAD: 0,<n> blocks, +CMQTTRXEND) come in either order
        pub = end = False
        while not (pub and end):
            if not await m.wait(65000, b"+CMQTT"):
                return None
            line = m.line
            if line.startswith(b"+CMQTTPUB:"):
                if not line.endswith(b",0"):
                    return None
                pub = True
            elif line.startswith(b"+CMQTTRXPAYLOAD:"):
                if not await m.raw(int(fields(line)[1])):
                    return None
            elif line.startswith(b"+CMQTTRXEND"):
                end = True
            elif line.startswith(b"+CMQTTCONNLOST"):
                return None
        # one batch at a time: the answer names this batch (its signed body hash)
        return 200

    async def http_end(self):
        m = self.m
        await self._urc(b"+CMQTTDISC=0,60", b"+CMQTTDISC:", 10000)
        await m.at(b"+CMQTTREL=0")
        await m.at(b"+CMQTTSTOP", 5000)
        await m.at(b"+CGACT=0,1", 10000)  # the PDP context
