"""Every use of a third-party library's internals, fenced: one module per library.

The rule: outside this package, Storyline uses only what a library documents or exports
as its API. A private name (``_schema``, ``broadcaster._backends``), an undocumented hook
(a method a library calls on itself, such as strawberry's ``run_operation`` or uvicorn's
``on_headers_complete``) or an undocumented behaviour (strawberry raising its HTTP
refusals ``from`` the error behind them) is reached only through a small named function or
class here, whose docstring says what upstream behaviour it relies on and for which
versions that was checked.

Each module has a test, ``tests/compat/test_<library>.py``, that pins that behaviour
against the installed version, and pyproject.toml bounds each patched library to the
versions those tests have run against: a new release is admitted by running them and
widening the bound. ``tests/compat/test_fenced.py`` fails when a private third-party
name is used anywhere else in ``storyline``.
"""
