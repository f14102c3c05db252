"""The ops web page served by ``callproof web`` (docs/customer-rights.md)."""
