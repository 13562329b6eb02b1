"""Executors: what runs a placed job's command (one interface in :mod:`.base`, one engine per file)."""
