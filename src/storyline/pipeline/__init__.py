"""What a generation pipeline imports to report to Storyline.

``storyline.pipeline.prefect`` (extra ``prefect``) holds the Prefect 3 task and flow
hooks; ``storyline.pipeline.example_flow`` is a runnable example. Nothing is imported
here, so that Storyline itself never needs Prefect.
"""
