"""The video service: the client Storyline calls it with, and a simulator that stands in for it."""
