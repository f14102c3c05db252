"""Customer rights: lookups, recording requests with deadlines, exports,
download links, delivery and call history (docs/customer-rights.md)."""
