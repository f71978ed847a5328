"""Storyline: charge, create and report AI video generation jobs over GraphQL."""
