"""Storage: the one way in (``database``), the tables, and keyword-only data functions that
take the caller's ``Transaction`` and never commit. Every SQL statement lives here."""
