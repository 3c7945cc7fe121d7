"""What the fault tests need from Ray itself: the PID of a live actor (through Ray's state API)."""

from __future__ import annotations


def actor_pid(class_name: str) -> int:
    """PID of the live Ray actor of that class (e.g. 'ServeReplica:faults:Generator')."""
    import ray._private.state

    alive = [a for a in ray._private.state.actors().values()
             if a["ActorClassName"] == class_name and a["State"] == "ALIVE"]
    if len(alive) != 1:
        raise LookupError(f"{len(alive)} live actors named {class_name}")
    return alive[0]["Pid"]
