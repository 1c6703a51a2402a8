"""Eventual consistency on demand: resources missing from describes right after their creation.

Until the sandbox's ``consistency`` section covers a case, tests hide resources themselves: for
the hidden describes the resource is taken out of moto's backend and put back afterwards, so a
describe by filter simply does not list it (as AWS's do for a while after a create).
https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html
"""

from __future__ import annotations

from typing import Any

#: describe action -> (backend attribute, how to reach the backend from the responder)
_STORES = {
    "DescribeVolumes": lambda r: r.ec2_backend.volumes,
    "DescribeDBInstances": lambda r: r.backend.databases,
}


def hide(resource_ids: set[str], *, describes: int, name: str = "test-hide") -> dict[str, Any]:
    """Hide ``resource_ids`` from the next ``describes`` describe calls that would list them."""
    from sandbox import realism

    state: dict[str, Any] = {"left": describes, "stash": {}, "hidden_calls": 0}

    def before(call: Any) -> None:
        store_of = _STORES.get(call.action)
        if store_of is None or state["left"] <= 0:
            return
        store = store_of(call.responder)
        present = [i for i in resource_ids if i in store]
        if not present:
            return
        state["left"] -= 1
        state["hidden_calls"] += 1
        state["stash"] = {i: store.pop(i) for i in present}

    def after(call: Any, result: Any) -> Any:
        if state["stash"] and call.action in _STORES:
            _STORES[call.action](call.responder).update(state["stash"])
            state["stash"] = {}
        return result

    realism.behaviour(name, before=before, after=after)
    realism.configure(name)
    return state
