"""The compliance report: per day and per month, what a regulator asks to see
(``callproof report compliance`` and the admin web page; docs/operations.md)."""
