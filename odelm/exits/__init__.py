"""Adaptive depth at inference: exit strategies for the looped and the ODE model.

`EXITS` maps a config name (conf/exit/*.yaml, `exit=...` in odelm.eval) to a Criterion class:

    static        fixed depth (the baseline)
    state_change  relative hidden-state change per unit depth < ε
    kl            KL(p_t ‖ p_{t−δ}) < ε (Huginn)
    q_exit        first step whose exit CDF >= q (Ouro; needs model.exit_gate)

`AdaptiveDepth` binds one to a model (per-example loop exit, or an event-stopped ODE solve, per
example or per batch); `build_exit` makes it from the `exit` config node.
"""
from __future__ import annotations

from typing import Any, Mapping

from .base import Criterion, ExitContext, ExitOutput
from .generate import KV_POLICIES, GenerationOutput, generate_with_exit
from .kl import KLExit
from .lens import logit_lens
from .q_exit import QExit, exit_distribution, q_exit_step
from .runner import AdaptiveDepth
from .state_change import StateChange
from .static import StaticDepth

EXITS: dict[str, type[Criterion]] = {c.name: c for c in (StaticDepth, StateChange, KLExit, QExit)}
RUNNER_KEYS = ("max_depth", "mode")


def build_exit(config: Mapping[str, Any] | None) -> AdaptiveDepth | None:
    """The exit strategy of an `exit` config node ({name, mode, max_depth, min_depth, ...}); None for
    name=none. Raises ValueError naming the offending value."""
    if config is None:
        return None
    params = dict(config)
    name = params.pop("name", "none")
    if name in (None, "none"):
        return None
    if name not in EXITS:
        raise ValueError(f"unknown exit {name!r}; choose one of {['none', *EXITS]}")
    runner = {key: params.pop(key) for key in RUNNER_KEYS if key in params}
    try:
        criterion = EXITS[name](**params)
    except TypeError as err:
        raise ValueError(f"exit={name}: {err}") from err
    return AdaptiveDepth(criterion, **runner)


__all__ = [
    "EXITS", "KV_POLICIES", "AdaptiveDepth", "Criterion", "ExitContext", "ExitOutput", "GenerationOutput",
    "KLExit", "QExit", "StateChange", "StaticDepth", "build_exit", "exit_distribution", "generate_with_exit",
    "logit_lens", "q_exit_step",
]
