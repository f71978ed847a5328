"""Storage: the engine, the tables and keyword-only data functions that never commit."""
