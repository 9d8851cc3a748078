"""Shared types of the exit strategies: what a criterion reads, what a run returns, the base class.

A `Criterion` decides when an example has had enough depth. It is written twice, once per family:

- discrete (looped model): `start(h0, ctx)` then `done(k, h_prev, h, ctx, state)` after step k
  (depth k), returning a (B,) bool;
- continuous (ODE model): `margin(τ, h, aux, velocity, ctx)` → (B,), > 0 while the example should go
  on and <= 0 once it may stop; the ODE runner turns it into an event function. A criterion that
  needs an integrated quantity (Q-exit's survival) supplies `aux0` / `aux_rate`, integrated beside h.

Every criterion is evaluated per token and reduced per example over the read-out positions
`ctx.mask` (B, L): an example exits once *all* its read-out positions satisfy the criterion. The
mask says where the answer is read (in teacher-forced evaluation: the supervised positions; in
generation: the last position); it never carries target values.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch


@dataclass
class ExitContext:
    """What a criterion may read besides the state.

    decode: (B, L, C) → (B, L, V) logits (the model's coda + norm + head: the logit lens).
    gate: (B, L, C) → (B, L) Ouro exit probability λ, or None when the model has no gate.
    mask: (B, L) bool read-out positions (at least one per row).
    """

    decode: Callable[[torch.Tensor], torch.Tensor]
    gate: Callable[[torch.Tensor], torch.Tensor] | None
    mask: torch.Tensor

    def select(self, rows: torch.Tensor) -> "ExitContext":
        """The context of a subset of rows (bool mask or index tensor)."""
        return ExitContext(self.decode, self.gate, self.mask[rows])

    def crop(self, length: int) -> "ExitContext":
        return ExitContext(self.decode, self.gate, self.mask[:, :length])


@dataclass
class ExitOutput:
    """Result of an adaptive-depth forward pass, per example.

    h: (B, L, C) state at each example's exit.  logits: (B, L, V) decoded from it.
    depth: (B,) depth reached (loop: steps taken; ODE: event time τ).
    nfe: (B,) field evaluations charged to the example. Per-example runs: its own evaluations
        (criterion evaluations that call the field included); batch runs: the whole batch's count.
    steps: (B,) accepted solver steps (loop: steps taken).
    exited: (B,) bool, True where the criterion fired (False: ran to the maximum depth).
    """

    h: torch.Tensor
    logits: torch.Tensor
    depth: torch.Tensor
    nfe: torch.Tensor
    steps: torch.Tensor
    exited: torch.Tensor


def masked_max(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L), (B, L) bool → (B,): max over the masked positions of each row."""
    return values.masked_fill(~mask, float("-inf")).amax(dim=1)


def masked_min(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L), (B, L) bool → (B,): min over the masked positions of each row."""
    return values.masked_fill(~mask, float("inf")).amin(dim=1)


def check_number(value: object, key: str, low: float = 0.0, high: float | None = None, low_open: bool = True) -> float:
    """A finite number in (low, high] (or [low, high] when low_open=False); ValueError naming `key` otherwise."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")
    if ok:
        ok = (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        bounds = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g}]'}"
        raise ValueError(f"{key} must be a number in {bounds}, got {value!r}")
    return float(value)


class Criterion(abc.ABC):
    """When to stop traversing depth. Subclasses set `name` and implement `done` and `margin`.

    Args:
        min_depth: never exit before this depth (the loop's step count, or the ODE's τ).
    """

    name: ClassVar[str]
    needs_gate: ClassVar[bool] = False

    def __init__(self, min_depth: float = 1.0) -> None:
        self.min_depth = check_number(min_depth, "exit.min_depth", low_open=False)

    def describe(self) -> dict:
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    # --- discrete depth (looped model) ----------------------------------------------------
    def start(self, h0: torch.Tensor, ctx: ExitContext) -> dict[str, torch.Tensor]:
        """Per-example running state (tensors with the batch first), from h0 (B, L, C)."""
        return {}

    @abc.abstractmethod
    def done(
        self, k: int, h_prev: torch.Tensor, h: torch.Tensor, ctx: ExitContext, state: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """After step k (h = h_k, h_prev = h_{k-1}, both (B, L, C)): (B,) bool, criterion met.
        Called at every step (also before min_depth) so running state stays current; may update `state`."""

    # --- continuous depth (ODE model) -----------------------------------------------------
    def aux0(self, h0: torch.Tensor, ctx: ExitContext) -> torch.Tensor | None:
        """An extra quantity integrated beside h (None: none)."""
        return None

    def aux_rate(self, tau: torch.Tensor, h: torch.Tensor, ctx: ExitContext) -> torch.Tensor:
        raise NotImplementedError(f"exit {self.name!r} integrates no auxiliary state")

    @abc.abstractmethod
    def margin(
        self,
        tau: torch.Tensor,
        h: torch.Tensor,
        aux: torch.Tensor | None,
        velocity: Callable[[], torch.Tensor],
        ctx: ExitContext,
    ) -> torch.Tensor:
        """(B,): > 0 while the example should continue, <= 0 once the criterion holds at (τ, h).
        `velocity()` evaluates F(τ, h; e) (one field evaluation, counted in the NFE)."""


def select_state(state: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    return {key: value[rows] for key, value in state.items()}
