"""Pure rules: pricing, the status lifecycle and the errors clients see. No I/O here."""
