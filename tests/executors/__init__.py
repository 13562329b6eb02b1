"""Executor tests: real processes, real servers on loopback."""
