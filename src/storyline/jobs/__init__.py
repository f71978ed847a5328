"""Background jobs every instance runs beside the API (the sweeper)."""
