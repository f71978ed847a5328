"""Use cases. Each owns its transactions; the schema layer only converts types."""
