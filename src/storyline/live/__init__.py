"""Live project status: one LISTEN connection per process, routed in-process by project id."""
