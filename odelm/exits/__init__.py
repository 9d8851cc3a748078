"""Adaptive depth at inference: exit strategies for the looped and the ODE model.

`EXITS` maps a config name (conf/exit/*.yaml, `exit=...` in odelm.eval) to a Criterion class:

    static        fixed depth (the baseline)
    state_change  relative hidden-state change per unit depth < ε
    kl            KL(p_t ‖ p_{t−δ}) < ε (Huginn)
    q_exit        first step whose exit CDF >= q (Ouro; needs model.exit_gate)
    converged     relative residual ‖F‖/‖h‖ < ε: the state has settled (ODE: checked at step ends
                  on the solver's own derivative), up to max_depth (alias max_t_end)

`AdaptiveDepth` binds one to a model (per-example loop exit, or an event-stopped ODE solve, per
example or per batch); `build_exit` makes it from the `exit` config node.
"""
from __future__ import annotations

from typing import Any, Mapping

from .base import Criterion, ExitContext, ExitOutput
from .converged import Converged
from .generate import KV_POLICIES, GenerationOutput, generate_with_exit
from .kl import KLExit
from .lens import logit_lens
from .q_exit import QExit, exit_distribution, q_exit_step
from .runner import AdaptiveDepth
from .state_change import StateChange
from .static import StaticDepth

EXITS: dict[str, type[Criterion]] = {c.name: c for c in (StaticDepth, StateChange, KLExit, QExit, Converged)}
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
    max_t_end = params.pop("max_t_end", None)  # the maximum horizon under its solver name
    if max_t_end is not None:
        if runner.get("max_depth") not in (None, max_t_end):
            raise ValueError(f"exit.max_t_end={max_t_end} and exit.max_depth={runner['max_depth']} disagree; set one")
        runner["max_depth"] = max_t_end
    try:
        criterion = EXITS[name](**params)
    except TypeError as err:
        raise ValueError(f"exit={name}: {err}") from err
    return AdaptiveDepth(criterion, **runner)


__all__ = [
    "EXITS", "KV_POLICIES", "AdaptiveDepth", "Converged", "Criterion", "ExitContext", "ExitOutput", "GenerationOutput",
    "KLExit", "QExit", "StateChange", "StaticDepth", "build_exit", "exit_distribution", "generate_with_exit",
    "logit_lens", "q_exit_step",
]
