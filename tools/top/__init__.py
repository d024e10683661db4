"""``nodemesh top``: live traffic per workload pair and service, from the agents' /metrics.

Sans-IO, in three parts that know nothing of each other's means:

- fetching (``scrape``): each node's agent over HTTP from inside its network namespace;
- computing (``metrics``, ``rates``, ``quantile``): exposition text to series, two scrapes to
  rows with rates, the way Prometheus' ``rate()`` and ``histogram_quantile()`` would;
- showing (``view``): a rich table, or a JSON document.

``command`` is the click command that wires them to a refresh loop.
"""
