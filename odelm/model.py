"""Language models over a latent depth integrator, and the plain transformer baseline.

    tokens ─▶ embed ─▶ prelude ─▶ e = h(0) ─▶ integrator(field) ─▶ h(t_end) ─▶ coda ─▶ norm ─▶ head ─▶ logits

`LatentLM` is the looped model when its integrator is `Loop(T)` and the continuous-depth model
when it is `ODESolve(...)`; the integrator can be swapped after training (the test-time compute
knob). `TransformerLM` has N distinct (non-shared) layers, for iso-parameter / iso-FLOP baselines.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import nn

from .depth import DepthOutput, DepthPlan, Integrator
from .field import VectorField, check_state_decay
from .nn import Block, CausalSelfAttention, DepthConditioning, RMSNorm
from .tasks.tokenizer import CharTokenizer

PAD_ID = CharTokenizer.PAD  # the tokenizer's padding id: masked out of bidirectional keys
POS_EMBEDDINGS = ("none", "learned")
WINDOW_PADDINGS = ("zeros", "none")
ATTN_SCORES = ("softmax", "sigmoid")


@dataclass
class ModelConfig:
    vocab_size: int
    d_model: int = 128
    n_heads: int = 4
    mlp_ratio: float = 4.0
    n_prelude: int = 0  # distinct blocks before the integrator
    n_coda: int = 0  # distinct blocks after it
    field_blocks: int = 1  # R shared blocks inside the vector field (LatentLM)
    injection: str = "add"  # none | add | concat
    depth_conditioned: bool = False
    step_conditioned: bool = False  # zero-initialised Δt-conditioning of the field (shortcut consistency)
    exit_gate: bool = False  # Ouro exit gate λ = σ(w·h + b) per token (LatentLM)
    n_layers: int = 4  # distinct layers of the plain TransformerLM
    pos_embedding: str = "none"  # none | learned: absolute positions added to the token embedding
    rotary: bool = True  # rotary (relative) positions inside every attention
    max_len: int | None = None  # longest sequence a learned position table covers (required for learned)
    causal: bool = True  # False: bidirectional attention everywhere (per-position tasks; no generation)
    row_end_id: int | None = None  # token that ends a grid row: rotary positions become (row, column)
    attn_window: int | None = None  # local attention: keys at most this many positions (grid: rows/columns) away
    window_padding: str = "zeros"  # zeros | none: keys a window misses at an edge count as zero keys (or not at all)
    attn_score: str = "softmax"  # softmax | sigmoid: a local window's keys weighed against each other, or each on its own (a sum)
    dropout: float = 0.0  # residual dropout in every block (training only; a fresh mask at every field evaluation)
    state_decay: float = 0.0  # λ: the field's leak −λ·h (LatentLM), which bounds the state's norm

    def __post_init__(self) -> None:
        if self.pos_embedding not in POS_EMBEDDINGS:
            raise ValueError(f"unknown model.pos_embedding {self.pos_embedding!r}; choose one of {POS_EMBEDDINGS}")
        if self.pos_embedding == "learned" and (
            isinstance(self.max_len, bool) or not isinstance(self.max_len, int) or self.max_len < 1
        ):
            raise ValueError(f"model.pos_embedding=learned needs model.max_len, an integer >= 1, got {self.max_len!r}")
        for key in ("vocab_size", "d_model", "n_heads", "field_blocks", "n_layers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{key} must be an integer >= 1, got {value!r}")
        for key in ("n_prelude", "n_coda"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"model.{key} must be an integer >= 0, got {value!r}")
        if self.attn_window is not None and (
            isinstance(self.attn_window, bool) or not isinstance(self.attn_window, int) or self.attn_window < 1
        ):
            raise ValueError(f"model.attn_window must be null (no limit) or an integer >= 1, got {self.attn_window!r}")
        if self.window_padding not in WINDOW_PADDINGS:
            raise ValueError(f"model.window_padding must be one of {WINDOW_PADDINGS}, got {self.window_padding!r}")
        if self.attn_score not in ATTN_SCORES:
            raise ValueError(f"model.attn_score must be one of {ATTN_SCORES}, got {self.attn_score!r}")
        if self.attn_score == "sigmoid" and self.attn_window is None:
            raise ValueError("model.attn_score=sigmoid sums a local window's keys and needs model.attn_window=w "
                             "(over a whole sequence the sum would grow with its length)")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout must be a number in [0, 1), got {self.dropout!r}")
        check_state_decay(self.state_decay)
        if not isinstance(self.causal, bool):
            raise ValueError(f"model.causal must be true or false, got {self.causal!r}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"model.d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size (rotary)"
            )
        if self.row_end_id is not None:
            if not self.rotary:
                raise ValueError("model.row_end gives 2-D rotary positions and needs model.rotary=true")
            if (self.d_model // self.n_heads) % 4:
                raise ValueError(f"model.row_end (2-D rotary) needs a head size divisible by 4, got "
                                 f"d_model/n_heads = {self.d_model}/{self.n_heads}")


@dataclass
class LMOutput:
    logits: torch.Tensor  # (B, L, V)
    depth: DepthOutput  # integrator stats and trajectory (TransformerLM: one "evaluation" per layer)
    e: torch.Tensor  # (B, L, C) prompt encoding after the prelude; h(0) = e for LatentLM


def token_matmul_weights(module: nn.Module) -> int:
    """Weights of the linear layers `module` applies to every token (τ-conditioning, applied once
    per evaluation and not per token, excluded)."""
    skip = {id(m) for d in module.modules() if isinstance(d, DepthConditioning) for m in d.modules()}
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear) and id(m) not in skip)


def grid_positions(tokens: torch.Tensor, row_end_id: int) -> torch.Tensor:
    """(row, column) of every token of `tokens` (B, L) for text written row by row, each row closed by
    `row_end_id`: "ab|cd|" -> rows 0 0 0 1 1 1, columns 0 1 2 0 1 2. Returns (B, L, 2) long."""
    ends = (tokens == row_end_id).long()  # (B, L)
    row = ends.cumsum(-1) - ends  # row-end tokens strictly before
    index = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    after_end = torch.where(ends.bool(), index + 1, torch.zeros_like(index))  # where the next row starts
    start = torch.cat([torch.zeros_like(index[:, :1]), after_end[:, :-1]], dim=1).cummax(-1).values
    return torch.stack([row, index - start], dim=-1)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


class _LanguageModel(nn.Module):
    """Embedding, prelude, coda, final norm and head shared by both model families."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_embed = nn.Embedding(c.max_len, c.d_model) if c.pos_embedding == "learned" else None
        self.prelude = nn.ModuleList(Block(c.d_model, c.n_heads, c.mlp_ratio, rotary=c.rotary) for _ in range(c.n_prelude))
        self.coda = nn.ModuleList(Block(c.d_model, c.n_heads, c.mlp_ratio, rotary=c.rotary) for _ in range(c.n_coda))
        self.norm = RMSNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)

    def _finish_init(self) -> None:
        self.apply(_init_weights)
        for module in self.modules():  # τ-conditioning starts at exactly zero: the autonomous block
            if isinstance(module, DepthConditioning):
                nn.init.zeros_(module.mlp[-1].weight)
                nn.init.zeros_(module.mlp[-1].bias)
        for module in self.modules():  # one dropout rate for every block
            if isinstance(module, Block):
                module.drop.p = float(self.config.dropout)
        for module in self.modules():  # one attention kind (and window) for every block: prelude, field, layers, coda
            if isinstance(module, CausalSelfAttention):
                module.causal = bool(self.config.causal)
                module.window = self.config.attn_window
                module.window_padding = self.config.window_padding
                module.score = self.config.attn_score

    def set_padding(self, tokens: torch.Tensor) -> None:
        """Bidirectional models: mask the right padding of `tokens` (B, L) out of every attention's keys
        until the next batch is encoded (None when the batch has no padding). Causal models need no mask:
        padding sits after every real position. Grid models (model.row_end) also take this batch's
        (row, column) positions here."""
        self.set_grid_positions(tokens)
        if self.config.causal:
            return
        pad = tokens == PAD_ID  # (B, L)
        mask = ~pad if bool(pad.any()) else None
        for module in self.modules():
            if isinstance(module, CausalSelfAttention):
                module.key_mask = mask

    def set_grid_positions(self, tokens: torch.Tensor) -> None:
        """Grid inputs (model.row_end): every attention's rotary positions become each token's (row,
        column), read from `tokens` (B, L): the row is the number of row-end tokens before it, the
        column its distance from the row's first token (a row-end token closes its own row), until the
        next batch is encoded."""
        if self.config.row_end_id is None:
            return
        positions = grid_positions(tokens, self.config.row_end_id)  # (B, L, 2)
        for module in self.modules():
            if isinstance(module, CausalSelfAttention):
                module.grid_positions = positions

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        self.set_padding(tokens)  # and the grid positions
        x = self.embed(tokens)  # (B, L, C)
        if self.pos_embed is not None:
            length = tokens.shape[1]
            if length > self.config.max_len:
                raise ValueError(
                    f"a sequence of {length} tokens is longer than model.max_len={self.config.max_len}, the learned "
                    "position table this model was trained with (use shorter inputs, or train with "
                    "model.pos_embedding=none and rotary positions, which have no length limit)"
                )
            x = x + self.pos_embed.weight[:length]  # (L, C) broadcast over B
        for block in self.prelude:
            x = block(x)
        return x

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., L, C) → logits (..., L, V); also the logit lens at any depth."""
        for block in self.coda:
            h = block(h)
        return self.head(self.norm(h))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _outer_weights(self) -> int:
        """Per-token matmul weights outside the depth: prelude, coda and head."""
        return sum(token_matmul_weights(m) for m in (*self.prelude, *self.coda, self.head))

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, max_new_tokens: int, eos_id: int) -> torch.Tensor:
        """Greedy decoding. tokens: (B, L0) prompts of equal length → (B, L0 + n) with n <= max_new_tokens;
        stops early once every row has produced `eos_id`. Recomputes the prefix each step (no KV cache)."""
        if not self.config.causal:
            raise ValueError("generate needs a causal model: a bidirectional model (model.causal=false) predicts "
                             "every position at once (per-position tasks) and has no left-to-right decoding")
        done = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
        for _ in range(max_new_tokens):
            next_id = self(tokens).logits[:, -1].argmax(-1)  # (B,)
            tokens = torch.cat([tokens, next_id[:, None]], dim=1)
            done |= next_id == eos_id
            if done.all():
                break
        return tokens


class LatentLM(_LanguageModel):
    """Looped / continuous-depth LM: one shared VectorField traversed by an Integrator."""

    def __init__(self, config: ModelConfig, integrator: Integrator) -> None:
        super().__init__(config)
        c = config
        self.field = VectorField(c.d_model, c.n_heads, c.field_blocks, c.mlp_ratio, c.injection, c.depth_conditioned,
                                 step_conditioned=c.step_conditioned, rotary=c.rotary, state_decay=c.state_decay)
        self.integrator = integrator
        self.exit_gate = nn.Linear(c.d_model, 1) if c.exit_gate else None
        self._finish_init()

    def flops_per_token(self, nfe_forward: float) -> float:
        """Forward matmul FLOPs per token (2 per linear weight applied) when the field is evaluated
        `nfe_forward` times. Attention-score products (4·L·C per block and token at context L, about
        L / 6C of a block's matmuls) are left out: at C = 128 that is <= 2% for modular_chain
        (sequences <= 15 tokens) and <= 5% for the longest built-in task (multihop, 38 tokens)."""
        return 2.0 * (self._outer_weights() + nfe_forward * token_matmul_weights(self.field))

    def exit_probability(self, h: torch.Tensor) -> torch.Tensor:
        """Ouro's per-step exit probability λ = σ(w·h + b): (..., L, C) → (..., L)."""
        if self.exit_gate is None:
            raise ValueError("this model has no exit gate (build it with model.exit_gate=true)")
        return torch.sigmoid(self.exit_gate(h).squeeze(-1))

    def forward(self, tokens: torch.Tensor, trajectory_at: Sequence[float] | None = None,
                plan: DepthPlan | None = None) -> LMOutput:
        """plan: this call's depth settings (a training objective's per-batch draws; None: nominal)."""
        e = self.encode(tokens)  # (B, L, C)
        mask = tokens != CharTokenizer.PAD  # (B, L) real tokens: what the integrator's regularisers average
        depth = self.integrator(self.field, e, e, trajectory_at=trajectory_at, mask=mask, plan=plan)  # h(0) = e
        return LMOutput(logits=self.decode(depth.h), depth=depth, e=e)


class TransformerLM(_LanguageModel):
    """Plain transformer: n_layers distinct blocks (no sharing), plus the same prelude/coda/head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        self.layers = nn.ModuleList(Block(c.d_model, c.n_heads, c.mlp_ratio, rotary=c.rotary) for _ in range(c.n_layers))
        self._finish_init()

    def flops_per_token(self, nfe_forward: float | None = None) -> float:
        """Forward matmul FLOPs per token: every layer once (`nfe_forward` is ignored; see LatentLM)."""
        return 2.0 * (self._outer_weights() + sum(token_matmul_weights(layer) for layer in self.layers))

    def forward(self, tokens: torch.Tensor, trajectory_at: Sequence[float] | None = None,
                plan: DepthPlan | None = None) -> LMOutput:
        if trajectory_at is not None or plan is not None:
            raise ValueError("the plain transformer has no depth trajectory or plan; trajectory_at and plan must be None")
        h = e = self.encode(tokens)
        for layer in self.layers:
            h = layer(h)
        n = self.config.n_layers
        depth = DepthOutput(h=h, nfe_forward=n, steps_accepted=n, steps_rejected=0, depth=float(n))
        return LMOutput(logits=self.decode(h), depth=depth, e=e)


def config_dict(config: ModelConfig) -> dict:
    return asdict(config)
