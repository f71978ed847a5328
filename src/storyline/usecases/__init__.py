"""Use cases: what a caller can ask of Storyline, each owning its transactions.

The GraphQL resolvers (schema/roots.py) only convert types and call these.
"""
