"""Helpers behind the Makefile targets (make secrets, make run, make demo)."""
