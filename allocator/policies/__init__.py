"""Placement policies, one per file, one interface."""
