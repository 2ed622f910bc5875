"""Test tools: instruments that check the lab from outside and share none of its code (docs/crosscheck.md)."""
