"""Reliability, security and performance proofs: `make reliability` and `make bench`."""
