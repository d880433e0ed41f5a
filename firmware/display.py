# The display: the page the button selects, drawn by the painter of the fitted
# screen (jkfw.oled for an SSD1306, jkfw.lcd for an HD44780), loaded only when a
# display is configured. What each page says is in jkfw.pages.
from .pages import PAGES


class Display:
    """Pages for `screen`: kind "ssd1306" (a FrameBuffer with show()) or "hd44780";
    levels: a tank or borewell level sensor is fitted (one page more shows it)."""

    upload_stale_s = 86400  # an older last upload is drawn inverted

    def __init__(self, screen, kind, levels=False):
        if kind == "ssd1306":
            from . import oled as painter
        elif kind == "hd44780":
            from . import lcd as painter  # type: ignore[no-redef]
        else:
            raise ValueError("display kind must be ssd1306 or hd44780")
        self.screen = screen
        self.kind = kind
        self.page = 0
        self.pages = PAGES + 1 if levels else PAGES
        self._ready = False  # init() sent; cleared when the bus fails
        self._painter = painter
        painter.setup(self)

    def next_page(self):
        """The button: show the next page."""
        self.page = (self.page + 1) % self.pages
        return self.page

    def render(self, status):
        """Draw the current page from `status`; False if the display did not answer."""
        try:
            if not self._ready:
                self.screen.init()
                self._painter.start(self)
                self._ready = True
            self._painter.draw(self, status or {})
            return True
        except OSError:
            # A loose or unplugged display must never stop the pump logic; it is
            # re-initialised on the next render (it may have lost power too).
            self._ready = False
            return False
