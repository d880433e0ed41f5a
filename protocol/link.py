# jalkal uplink wire names: what a sender (the board, jalkal replay) and the server
# (jalkal serve) must spell alike. protocol/SPEC.md ("Uplink") states the contract,
# docs/uplink.md all of it. Runs unchanged on MicroPython and CPython: plain str
# constants; the board encodes the few it puts on the wire.

# HTTP: a batch is the body of a POST to PATH on the server's URL
PATH = "/v1/frames"
HEALTH_PATH = "/v1/health"  # GET: the server's own state
CONTENT_TYPE = "application/octet-stream"  # of a batch

# MQTT, QoS 1: a batch on UP_TOPIC, the server's answer on ACK_TOPIC; %s is the
# device id, 8 lowercase hex digits (the server subscribes to UP_TOPIC % "+")
UP_TOPIC = "jalkal/v1/%s/up"
ACK_TOPIC = "jalkal/v1/%s/ack"

# the answer, one JSON object for HTTP and MQTT alike: its fields
OK = "ok"  # true: the whole body was acknowledged
FRAMES = "frames"  # frames found in the body; 0: refused as a whole
STORED = "stored"
DUPLICATE = "duplicate"  # acknowledged, kept once already
REJECTED = "rejected"
ACKED = "acked"  # runs [device, boot, first seq, last seq]; [] when none
ACKED_BYTES = "acked_bytes"  # the acknowledged prefix of the body, in bytes
BODY_BYTES = "body_bytes"
BODY_CRC32 = "body_crc32"  # 8 hex digits: matches an MQTT answer to its batch
REASONS = "reasons"  # {reason: rejected frames}
ERRORS = "errors"  # the first rejected frames, one object each
ERROR = "error"  # the body's or the first rejected frame's reason
MESSAGE = "message"
DEVICE = "device"  # 8 hex digits: the device whose key signs the answer
SIG = "sig"  # 16 hex digits: HMAC-SHA256(device key, codec.ack_msg(...))[0:8]
