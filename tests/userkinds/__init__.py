"""Sweep kinds written outside raysweep, as a user writes them (tests/test_user_kind.py runs them through the CLI)."""
