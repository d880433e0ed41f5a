"""The board's file layout, as the firmware itself names it (jkfw.main, jkfw.logger,
jkfw.store): the field tools read the board where the firmware writes."""

from __future__ import annotations

from jkfw import logger, main, store, tls

CONFIG = main.CONFIG  # the board's config.json (jalkal deploy writes it)
FLASH = main.FLASH  # state and the frame ring
SD_LOG = f"{main.SD}/{logger.LOG_DIR}"  # the card's daily logs
RING = f"{FLASH}/{logger.RING_DIR}"  # the flash ring, while the card is away
STATE = f"{FLASH}/{store.STATE}"  # the firmware's persisted state
SERVER_CERT = tls.CERT  # https/mqtts: the server's certificate, pinned
RING_HDR_FMT = logger.RING_HDR_FMT  # a ring slot's header: magic, generation
RING_HDR_LEN = logger.RING_HDR_LEN
RING_MAGIC = logger.RING_MAGIC
