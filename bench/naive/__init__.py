"""The naive implementation: what a newcomer would write from the same stack.

strawberry + starlette + uvicorn with its defaults (per-message deflate on), SQLAlchemy's
async ORM, and broadcaster's stock Postgres backend: one LISTEN channel per project on a
connection shared with ``pg_notify``, publish after commit, one unbounded queue per
subscriber. Kept deliberately as is: it is the baseline, not a product.
"""
