"""An objective is a weighted sum of named terms; each term is logged on its own.

A term declares what it needs from the training step, so the Lightning module does no more work
than the objective asks for:
    needs_output: the model's forward solve (False for simulation-free distillation terms);
    trajectory_at(model): depths at which the forward must also return states (per-step terms);
    needs_teacher: a trained checkpoint (`objective.teacher`), attached with `attach_teacher`;
    prepare(model): validate the model and set up what the term reads, or freeze parameters
        (Ouro Stage II); raises ValueError naming the problem;
    plan(model): DepthPlan fields this term needs in the forward of one batch (e.g. RNODE states,
        a random horizon), drawn afresh per batch.
The objective combines the terms' plans with its own per-batch depth draws (`objective.depth`:
STEER, random discretisation) into one DepthPlan per training forward (`Objective.plan`); the
integrator stores none of it.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data import IGNORE, Batch
from ..depth import DepthPlan, RandomDepth
from ..model import LMOutput
from ..tasks import CharTokenizer


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor  # scalar: Σ weight · term
    terms: dict[str, torch.Tensor]  # unweighted, detached, for logging


class Term(abc.ABC):
    """One loss term. `name` is its key in metrics.csv."""

    name: str
    needs_output: bool = True
    needs_teacher: bool = False
    plan_keys: frozenset[str] = frozenset()  # DepthPlan fields `plan` chooses (beside regularisers)

    @abc.abstractmethod
    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        """A scalar loss for this batch (`out` is None when no term of the objective needs the solve)."""

    def trajectory_at(self, model: torch.nn.Module) -> list[float] | None:
        return None

    def prepare(self, model: torch.nn.Module) -> None:
        """Check the model suits this term and set up what the term reads; ValueError if not."""

    def plan(self, model: torch.nn.Module) -> dict:
        """DepthPlan fields for this batch's forward (drawn per call; {} for none)."""
        return {}

    def attach_teacher(self, teacher: torch.nn.Module) -> None:
        raise ValueError(f"objective term {self.name!r} takes no teacher")


def answer_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean CE over supervised positions. logits (B, L, V), targets (B, L) with IGNORE elsewhere."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


class Objective:
    """Σ_i weight_i · term_i(model, batch, out).

    depth: per-batch depth draws of an ODE model (STEER end, random discretisation), or None.
    """

    def __init__(self, terms: dict[str, tuple[Term, float]], depth: RandomDepth | None = None) -> None:
        if not terms:
            raise ValueError("an objective needs at least one term")
        for name, (_, weight) in terms.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                raise ValueError(f"objective weight of {name!r} must be a number >= 0, got {weight!r}")
        self.terms = terms
        self.depth = depth
        self.trajectory_at: list[float] | None = None

    @property
    def names(self) -> list[str]:
        return list(self.terms)

    @property
    def needs_output(self) -> bool:
        return any(term.needs_output for term, _ in self.terms.values())

    @property
    def needs_teacher(self) -> list[str]:
        return [name for name, (term, _) in self.terms.items() if term.needs_teacher]

    def prepare(self, model: torch.nn.Module) -> None:
        """Prepare every term for `model` and collect the depths the forward must return."""
        if self.depth is not None:
            integrator = getattr(model, "integrator", None)
            if integrator is None or getattr(integrator, "name", None) != "ode":
                raise ValueError("objective.depth.steer_b / methods (per-batch depth draws) need model=ode")
            self.depth.check(integrator.t_end)
        chosen = {"t_end"} if self.depth is not None and self.depth.steer_b else set()
        for name, (term, _) in self.terms.items():
            clash = chosen & term.plan_keys
            if clash:
                raise ValueError(f"objective term {name!r} and another part of the objective both choose the depth "
                                 f"plan's {sorted(clash)} (e.g. STEER and horizon_ce); combine at most one of them")
            chosen |= term.plan_keys
        depths: set[float] = set()
        for term, _ in self.terms.values():
            term.prepare(model)
            depths |= set(term.trajectory_at(model) or [])
        self.trajectory_at = sorted(depths) or None

    def plan(self, model: torch.nn.Module) -> DepthPlan | None:
        """The depth plan of one training forward: the objective's draws and every term's needs
        (None when nothing departs from the nominal solve)."""
        plan = DepthPlan()
        if self.depth is not None:
            plan = plan.merge(**self.depth.draw(model.integrator.t_end))
        for term, _ in self.terms.values():
            fields = term.plan(model)
            if fields:
                plan = plan.merge(**fields)
        return None if plan == DepthPlan() else plan

    def attach_teacher(self, teacher: torch.nn.Module) -> None:
        for term, _ in self.terms.values():
            if term.needs_teacher:
                term.attach_teacher(teacher)

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> ObjectiveOutput:
        set_padding = getattr(model, "set_padding", None)  # bidirectional models: mask this batch's padding,
        if set_padding is not None and batch is not None:  # also for terms that evaluate the field without a forward (distillation)
            set_padding(batch.tokens)
        values = {name: term(model, batch, out) for name, (term, _) in self.terms.items()}
        loss = sum(self.terms[name][1] * value for name, value in values.items())
        return ObjectiveOutput(loss=loss, terms={k: v.detach() for k, v in values.items()})


def field_of(model: torch.nn.Module, term: str):
    """The model's shared vector field; ValueError for a model without one (the plain transformer)."""
    field = getattr(model, "field", None)
    if field is None:
        raise ValueError(f"objective term {term!r} needs a latent model with a vector field (model=looped or ode)")
    return field


def integer_depths(model: torch.nn.Module, term: str) -> list[float]:
    """1 … T: the loop steps of a looped model, the integer depths of an ODE model's horizon."""
    integrator = getattr(model, "integrator", None)
    if integrator is None:
        raise ValueError(f"objective term {term!r} needs a latent model (model=looped or model=ode)")
    horizon = int(integrator.t_end)
    if horizon < 1:
        raise ValueError(f"objective term {term!r} needs a horizon of at least one step, got t_end={integrator.t_end}")
    return [float(k) for k in range(1, horizon + 1)]


def token_mask(batch: Batch) -> torch.Tensor:
    """(B, L) float: 1 at real (non-padding) positions, whose hidden states the flow terms regress."""
    return (batch.tokens != CharTokenizer.PAD).to(torch.get_default_dtype())


def per_token_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(..., B, L, V), (B, L) → (..., B, L) cross-entropy per position, 0 where targets are IGNORE."""
    lead = logits.shape[:-3]
    t = targets.expand(*lead, *targets.shape) if lead else targets
    return F.cross_entropy(logits.flatten(0, -2), t.flatten(), ignore_index=IGNORE, reduction="none").view(t.shape)


def flow_matching_loss(
    field: torch.nn.Module,
    x0: torch.Tensor,
    x1: torch.Tensor,
    tau0: torch.Tensor,
    tau1: torch.Tensor,
    e: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Regress the field onto the straight path from x0 (at depth tau0) to x1 (at tau1).

    x0, x1, e: (B, L, C); tau0 < tau1: (B,); mask: (B, L). Draws s ~ U[0, 1) per example (one for the
    whole batch when the field is depth-conditioned: its τ is a scalar per call), evaluates the field
    once at x_s = x0 + s (x1 − x0), τ_s = tau0 + s (tau1 − tau0), and returns the masked mean over
    positions of mean_C (F(τ_s, x_s; e) − (x1 − x0) / (tau1 − tau0))².
    """
    B = x0.shape[0]
    shared = bool(getattr(field, "depth_conditioned", False))
    s = torch.rand(1 if shared else B, device=x0.device, dtype=x0.dtype).expand(B)  # (B,)
    tau = tau0 + s * (tau1 - tau0)  # (B,)
    if shared and not torch.all(tau == tau[0]):
        raise ValueError("a depth-conditioned field takes one τ per call; sample the segment once per batch")
    x = x0 + s[:, None, None] * (x1 - x0)  # (B, L, C)
    velocity = (x1 - x0) / (tau1 - tau0)[:, None, None]
    error = (field(tau[0], x, e) - velocity).pow(2).mean(-1)  # (B, L)
    return (error * mask).sum() / mask.sum().clamp(min=1)


def step_states(out: LMOutput | None, depths: list[float]) -> torch.Tensor:
    """(T, B, L, C): the forward's trajectory at `depths` (requested through Term.trajectory_at)."""
    if out is None or out.depth.trajectory is None:
        raise ValueError("this term needs the forward trajectory; call Objective.prepare(model) before training")
    taus = out.depth.trajectory_tau
    missing = [t for t in depths if t not in taus]
    if missing:
        raise ValueError(f"the forward trajectory lacks depths {missing} (it has {taus})")
    index = torch.tensor([taus.index(t) for t in depths], device=out.depth.trajectory.device)
    return out.depth.trajectory[index]
