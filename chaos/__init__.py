"""The chaos harness (``python -m chaos``, ``make chaos``): three ``storyline serve``
instances on one PostgreSQL, under load, with faults injected at random and overlapping;
at the end, checks that nothing was lost, charged twice or left behind.

- ``cluster``: PostgreSQL, the proxy in front of it, the instances, the video service
- ``proxy``: the TCP proxy between the instances and PostgreSQL (latency, cuts, listeners)
- ``upstream``: the harness's video service and the pipeline that reports back
- ``client``: GraphQL over HTTP, spread over the instances
- ``load``: users, admins; ``watchers``: accountChanges and projectStatus clients
- ``faults``: what is injected, and when
- ``record``: what happened, second by second; ``checks``: the verdicts
- ``report``: docs/reliability.md and its timeline plot
- ``run``: one run from start to report
"""
