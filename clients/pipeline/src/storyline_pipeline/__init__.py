"""Storyline's pipeline client: what a generation pipeline imports to report to Storyline.

A distribution of its own (``storyline-pipeline``), which needs nothing of the server:
``storyline_pipeline.reports`` sends one ``updateStatus`` over HTTP (httpx only);
``storyline_pipeline.prefect`` (extra ``prefect``) holds the Prefect 3 task and flow hooks;
``storyline_pipeline.example_flow`` is a runnable example. Nothing is imported here, so
that the reporting part never needs Prefect.

Versioned with the contract: the major version is the version of Storyline's public
contract (its ``schema.graphql``) that this client was checked against, the minor one the
client's own releases within it. ``CONTRACT_SHA256`` is that contract's hash; a test fails
when the contract in this repository changes, until the client has been checked against
the new one and both constants (and the major version) are moved on.
"""

CONTRACT_VERSION = 1
CONTRACT_SHA256 = "87da95bed97a8693f6f1af7c43359db7f4bf9d0bdd977a19eb212dfd084396a7"
# A literal, which the build reads without importing the package.
__version__ = "1.0"
