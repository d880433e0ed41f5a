"""Frames to numbers people read: the day rules, periods, alerts, exports, plots,
pages (see docs/reports.md)."""
