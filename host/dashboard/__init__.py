"""The live dashboard: State, district, block and village pages and a JSON API over
the store, with the report's own numbers (docs/dashboard.md)."""
