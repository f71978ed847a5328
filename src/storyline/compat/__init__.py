"""Third-party private names and undocumented hooks: one module per library."""
