"""The destination agent's authorization: every connection into a local pod, at connect time
and again whenever the policies (or the labels they select by) change.

``delivery.connect_app`` asks ``decide`` once per connection, on all three ways into a pod;
the decision (which policy, which rule) stays on the connection, with what deciding it took
(source identity and address, destination pod port), so that a policy change can decide it
again: ``recheck``, which the agent calls when it applies a view, resets the connections now
denied (ztunnel's late rejection). A connection whose app was still being connected when the
policies changed is decided again by ``ProxyCore.splice`` before its first byte (``current``).

The evaluation is ``nodemesh.authz.evaluate``'s, with one ``PolicySet`` per view (made when a
connection first meets the view); counting a decision is one dict update by the decision
object, whose labels are read only when Prometheus scrapes.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

from nodemesh.agent.proxy import relay
from nodemesh.agent.proxy.conntrack import Connection, ConnectionTable
from nodemesh.agent.state.store import View
from nodemesh.authz.evaluate import Decision, PolicySet
from nodemesh.model import Workload

log = logging.getLogger(__name__)

# The outcome of an established connection closed by a policy change (response flag DENY).
DENIED_LATE = "denied_late"
NONE = "none"  # the metric's label for the default decision (no policy, no action)

# (policy, action, result): the decisions counter's labels
DecisionKey = tuple[str, str, str]


def _labels(decision: Decision) -> DecisionKey:
    return (decision.policy or NONE, decision.action or NONE, "allowed" if decision.allowed else "denied")


def _relabelled(before: View | None, after: View | None) -> bool:
    """Whether a workload's labels changed between two views: which policies select it may have
    (a pod labelled into a policy's selector must lose the connections the policy denies)."""
    if before is None or after is None:
        return False
    old = before.model.workloads
    return any(w.labels != old[uid].labels for uid, w in after.model.workloads.items() if uid in old)


class Authorizer:
    def __init__(self, view: Callable[[], View | None]) -> None:
        self.view = view
        self._view: View | None = None
        self._set = PolicySet({})
        # Bumped for each set that may decide differently from the one before: what a
        # connection's ``authorized_in`` is compared with.
        self.generation = 0
        self._checked = 0  # the generation the last re-check was made for
        self._counts: dict[Decision, int] = {}  # decisions of the current set, by identity
        self._folded: Counter[DecisionKey] = Counter()  # those of the sets before, by labels
        self.late: Counter[tuple[str, str]] = Counter()  # (policy, action) -> late rejections

    def policies(self) -> PolicySet:
        """The current view's compiled policies (made on the first call after a view change)."""
        view = self.view()
        if view is not self._view:
            before, self._view = self._view, view
            self._set = PolicySet(view.model.policies if view is not None else {}, self._set)
            if self._set.changed or _relabelled(before, view):
                self.generation += 1
            for decision, n in self._counts.items():  # decisions are the set's: count them by labels from now on
                self._folded[_labels(decision)] += n
            self._counts = {}
        return self._set

    def decide(self, conn: Connection, workload: Workload) -> Decision:
        """Decide ``conn`` into ``workload`` (its ``source_identity``, ``source_ip`` and
        ``app_port`` say the rest), count the decision, and keep it on the connection."""
        decision = self.policies().decide(conn.source_identity, conn.source_ip, workload, conn.app_port)
        self._counts[decision] = self._counts.get(decision, 0) + 1
        conn.authorization, conn.authorized_in = decision, self.generation
        return decision

    def current(self, conn: Connection) -> bool:
        """Whether a connection decided earlier is still allowed; decided again (and counted)
        only if the policies changed since."""
        self.policies()
        if conn.authorized_in == self.generation:
            return True
        return self.decide(conn, self._destination(conn)).allowed

    def recheck(self, table: ConnectionTable) -> list[Connection]:
        """Decide the established connections into local pods again if the policies changed
        since the last re-check; reset those now denied. Returns them."""
        policies = self.policies()
        if self._checked == self.generation:
            return []
        self._checked = self.generation
        rejected = []
        for conn in list(table.in_flight.values()):
            if conn.authorization is None or conn.outcome != "ok" or conn.authorized_in == self.generation:
                continue  # not delivered here, not relaying yet (``current`` sees to it), or decided with these
            decision = policies.decide(conn.source_identity, conn.source_ip, self._destination(conn), conn.app_port)
            conn.authorization, conn.authorized_in = decision, self.generation
            if decision.allowed:
                continue
            self._counts[decision] = self._counts.get(decision, 0) + 1
            self.late[(decision.policy, decision.action)] += 1
            conn.outcome, conn.failure = DENIED_LATE, f"closed by a policy change: {decision.reason}"
            log.warning("%s %s -> %s reset: no longer allowed, %s", conn.direction, conn.source_identity or conn.source,
                        conn.destination, decision.reason)
            for pipe in (conn.down, conn.up):
                if pipe is not None and pipe.transport is not None:
                    relay.reset(pipe.transport)
            rejected.append(conn)
        return rejected

    def _destination(self, conn: Connection) -> Workload:
        """The destination as the current view has it (its labels may have changed)."""
        workload = conn.destination_workload
        assert workload is not None, "only connections into local pods are authorized"
        view = self._view
        return view.model.workloads.get(workload.uid, workload) if view is not None else workload

    def decisions(self) -> dict[DecisionKey, int]:
        """Decisions since start by (policy, action, result), for the metrics."""
        out = Counter(self._folded)
        for decision, n in self._counts.items():
            out[_labels(decision)] += n
        return dict(out)
