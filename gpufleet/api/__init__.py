"""The FastAPI access layer: JWT roles, audit log."""
