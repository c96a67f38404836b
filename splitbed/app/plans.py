"""The order in which an edge node runs a scenario's plans (shared by the edge and the run)."""

from __future__ import annotations


def plan_groups(plans: list[dict]) -> list[list[dict]]:
    """Plans in the order they run: consecutive plans with interleave: true share one trace replay and
    take turns request by request (so they meet the same moments of the trace and of the host's
    speed); every other plan gets a replay of its own."""
    groups: list[list[dict]] = []
    for plan in plans:
        if plan.get("interleave") and groups and groups[-1][-1].get("interleave"):
            groups[-1].append(plan)
        else:
            groups.append([plan])
    return groups
