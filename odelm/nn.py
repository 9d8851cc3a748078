"""Transformer building blocks: RMSNorm, rotary positions, causal or bidirectional attention, SwiGLU,
and a pre-norm block with optional zero-initialised depth (τ) conditioning.

Knows nothing about solvers, Lightning or Hydra. Shapes: B batch, L sequence, C = d_model.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _reusable(cached: torch.Tensor) -> bool:
    """A cached constant made under torch.inference_mode cannot enter a graph that autograd saves for
    backward; outside inference mode such a tensor is rebuilt, not reused."""
    return torch.is_inference_mode_enabled() or not cached.is_inference()


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Rotary(nn.Module):
    """Rotary position embedding (RoPE), cached per sequence length."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary head_dim must be even, got {head_dim}")
        self.base = base
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: tuple[int, torch.device, torch.dtype, torch.Tensor, torch.Tensor] | None = None
        self._grid_cache: tuple[torch.Tensor, torch.dtype, torch.Tensor, torch.Tensor] | None = None

    def cos_sin(self, length: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is None or self._cache[:3] != (length, device, dtype) or not _reusable(self._cache[3]):
            pos = torch.arange(length, device=device, dtype=torch.float32)
            freqs = torch.outer(pos, self.inv_freq.to(device))  # (L, hd/2)
            self._cache = (length, device, dtype, freqs.cos().to(dtype), freqs.sin().to(dtype))
        return self._cache[3], self._cache[4]

    def cos_sin_grid(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Axial (2-D) rotary angles: positions (B, L, 2) holds each token's (row, column); the first half
        of the rotated pairs turns with the row, the second with the column, each over the frequencies of
        a head half as wide. A query-key score then depends on (Δrow, Δcolumn) only, whatever the grid's
        width. Returns cos, sin of shape (B, 1, L, hd/2), cached for the batch's positions tensor (a solve
        evaluates the field many times on one batch)."""
        cached = self._grid_cache
        if cached is not None and cached[0] is positions and cached[1] == dtype and _reusable(cached[2]):
            return cached[2], cached[3]
        quarter = self.inv_freq.numel() // 2
        inv = 1.0 / (self.base ** (torch.arange(quarter, device=positions.device, dtype=torch.float32) / quarter))
        pos = positions.to(torch.float32)
        freqs = torch.cat([pos[..., 0:1] * inv, pos[..., 1:2] * inv], dim=-1)  # (B, L, hd/2)
        cos, sin = freqs.cos().to(dtype)[:, None], freqs.sin().to(dtype)[:, None]
        self._grid_cache = (positions, dtype, cos, sin)
        return cos, sin

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x: (B, H, L, hd); rotate pairs (x1, x2) of the two halves
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention, with rotary positions unless `rotary=False` (positions then come
    from the embedding alone, e.g. learned absolute positions).

    causal=True: position i attends to positions <= i. causal=False (bidirectional, for tasks whose
    answer is predicted at every position at once): every position attends to every real position;
    `key_mask` (B, L) bool, True at real tokens, keeps right padding out of the keys (set by the
    model's `encode` for the batch it encodes; None when the batch has no padding). `grid_positions`
    (B, L, 2), set the same way for grid inputs (model.row_end), makes the rotary positions 2-D.

    window=w (None: no limit): local attention, as a convolution of radius w sees its neighbours: a
    query attends only to keys at most w positions away (causal: the w before it and itself); on grid
    inputs the distance is max(|Δrow|, |Δcolumn|), a (2w+1)×(2w+1) square. Information then travels at
    most w positions per block, so the number of evaluations, not a learned shortcut, sets how far it
    can spread, and the same rule applies at every length (DeepThinking's recurrent convolutions).
    """

    def __init__(self, d_model: int, n_heads: int, causal: bool = True, rotary: bool = True) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.causal = causal
        self.key_mask: torch.Tensor | None = None
        self.grid_positions: torch.Tensor | None = None
        self.window: int | None = None
        self.window_padding = "zeros"  # zeros | none: what a window that reaches past the input holds
        self.score = "softmax"  # softmax | sigmoid (local windows only): how a window weighs its keys
        self._bias_cache: tuple | None = None  # (key_mask, grid_positions, their versions, settings, mask or bias)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self.rotary = Rotary(d_model // n_heads) if rotary else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)  # 3 × (B, L, C)
        q, k, v = (t.view(B, L, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, L, hd)
        if self.rotary is not None and self.grid_positions is not None:
            if tuple(self.grid_positions.shape[:2]) != (B, L):
                raise ValueError(f"attention got a batch of shape ({B}, {L}) but the grid positions of the batch last "
                                 f"encoded have shape {tuple(self.grid_positions.shape[:2])}")
            cos, sin = self.rotary.cos_sin_grid(self.grid_positions, x.dtype)  # (B, 1, L, hd/2)
            q, k = Rotary.rotate(q, cos, sin), Rotary.rotate(k, cos, sin)
        elif self.rotary is not None:
            cos, sin = self.rotary.cos_sin(L, x.device, x.dtype)
            q, k = Rotary.rotate(q, cos, sin), Rotary.rotate(k, cos, sin)
        if self.window is not None:
            y = self._windowed(q, k, v)  # (B, H, L, hd)
        elif self.causal:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, L, hd)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=self._attn_mask(B, L))  # (B, H, L, hd)
        return self.proj(y.transpose(1, 2).reshape(B, L, C))

    def _window_keys(self) -> int:
        """Keys a window holds away from every edge: (w + 1) causal, (2w + 1) bidirectional; on a grid
        the (2w + 1)² square, or its causal part (the w rows above, then w + 1 keys of the own row)."""
        w = self.window
        if self.grid_positions is not None:
            return w * (2 * w + 1) + w + 1 if self.causal else (2 * w + 1) ** 2
        return w + 1 if self.causal else 2 * w + 1

    def _windowed(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.score == "sigmoid":
            return self._windowed_sigmoid(q, k, v)
        return self._windowed_softmax(q, k, v)

    def _windowed_sigmoid(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Local attention that sums: y_i = Σ_j σ(q_i·k_j/√hd − log n) v_j over the keys j of i's window
        (n: the keys a full window holds), each weight on its own, with no softmax normalisation, as a
        convolution sums its neighbours (sigmoid attention, Ramapuram et al. 2024, with their bias
        −log n). A key the window misses adds nothing, so both window paddings are the same here."""
        B, H, L, hd = q.shape
        allowed = self._window_bias(B, L, q.dtype, q.device)  # bool (L, L) or (B, 1, L, L)
        scores = (q @ k.transpose(-1, -2)) * hd ** -0.5  # (B, H, L, L)
        weights = torch.sigmoid(scores - math.log(self._window_keys())) * allowed
        return weights @ v  # (B, H, L, hd)

    def _windowed_softmax(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Local attention. window_padding="zeros": every key the window misses (past the start or end
        of the input, or right padding) counts as a zero key with a zero value, as a convolution pads
        with zeros: a query near an edge weighs its real keys against the missing ones exactly as a
        query inside the input does, so the first positions follow the same rule as all others. One
        zero key column with score log(m) stands for the m missing keys (q·0 = 0, weight m·e⁰).
        "none": the softmax runs over the real keys alone."""
        B, H, L, hd = q.shape
        mask_or_bias = self._window_bias(B, L, q.dtype, q.device)
        if self.window_padding == "none":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask_or_bias)  # mask (L, L) or (B, 1, L, L)
        zero = q.new_zeros(B, H, 1, hd)
        return F.scaled_dot_product_attention(q, torch.cat([k, zero], dim=2), torch.cat([v, zero], dim=2),
                                              attn_mask=mask_or_bias)  # bias (..., L, L + 1)

    def _window_bias(self, batch: int, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The window's attention mask ("none") or additive bias with the zero-key column ("zeros"),
        built once per encoded batch: it depends only on the batch's padding and grid positions, which
        stay fixed over the many field evaluations of one solve. The cache is keyed on those tensors'
        identity and version (a new batch, or an in-place change, rebuilds it) and on every setting
        that shapes the result."""
        tensors = (self.key_mask, self.grid_positions)
        if (torch.compiler.is_compiling() or torch.is_inference_mode_enabled()
                or any(t is not None and t.is_inference() for t in tensors)):
            # Uncached: a compiled block traces the build into its graph (a version check there would
            # break the graph), and inference tensors keep no version counter, nor may a tensor made
            # under inference mode be saved for a later backward.
            return self._build_window_bias(batch, length, dtype, device)
        versions = tuple(None if t is None else t._version for t in tensors)
        settings = (batch, length, self.causal, self.window, self.window_padding, self.score, dtype, device)
        cached = self._bias_cache
        if (cached is not None and cached[0] is tensors[0] and cached[1] is tensors[1]
                and cached[2] == versions and cached[3] == settings):
            return cached[4]
        result = self._build_window_bias(batch, length, dtype, device)
        self._bias_cache = (tensors[0], tensors[1], versions, settings, result)
        return result

    def _build_window_bias(self, batch: int, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        allowed = self._local_mask(batch, length, device)  # (L, L) or (B, 1, L, L)
        if self.window_padding == "none" or self.score == "sigmoid":
            return allowed
        missing = (self._window_keys() - allowed.sum(-1, keepdim=True)).clamp(min=0).to(dtype)  # (..., L, 1)
        minus_inf = torch.tensor(float("-inf"), dtype=dtype, device=device)
        return torch.cat([torch.where(allowed, torch.zeros((), dtype=dtype, device=device), minus_inf),
                          torch.where(missing > 0, missing.log(), minus_inf)], dim=-1)  # (..., L, L + 1)

    def _local_mask(self, batch: int, length: int, device: torch.device) -> torch.Tensor:
        """Allowed (query, key) pairs under `window`: (L, L), or (B, 1, L, L) with grid positions or a
        padding mask. A query always sees itself, so no row is empty (an all-masked row gives NaN, and a
        NaN value at a padding position would reach real positions through a zero attention weight)."""
        w = self.window
        if self.grid_positions is not None:
            pos = self.grid_positions  # (B, L, 2)
            near = (pos[:, :, None, :] - pos[:, None, :, :]).abs().amax(-1) <= w  # (B, L, L)
            index = torch.arange(length, device=device)
            if self.causal:
                near = near & (index[None, :] <= index[:, None])
            local = near[:, None]  # (B, 1, L, L)
        else:  # built once per batch with the bias (_window_bias), so no cache of its own
            index = torch.arange(length, device=device)
            offset = index[:, None] - index[None, :]  # query − key
            local = (offset <= w) & (offset >= (0 if self.causal else -w))  # (L, L)
        key_mask = None if self.causal else self._attn_mask(batch, length)  # (B, 1, 1, L) or None
        if key_mask is None:
            return local
        self_key = torch.eye(length, dtype=torch.bool, device=device)
        return local & (key_mask | self_key)  # (B, 1, L, L)

    def _attn_mask(self, batch: int, length: int) -> torch.Tensor | None:
        mask = self.key_mask
        if mask is None:
            return None
        if tuple(mask.shape) != (batch, length):
            raise ValueError(
                f"bidirectional attention got a batch of shape ({batch}, {length}) but the padding mask of the "
                f"batch last encoded has shape {tuple(mask.shape)}: a padded batch must be run whole (split it "
                "into equal-length groups first, as odelm.exits does)"
            )
        return mask[:, None, None, :]  # (B, 1, 1, L): every query sees the real keys of its row


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class DepthConditioning(nn.Module):
    """Maps depth τ to a per-channel (shift, scale) pair, adaLN style.

    The output projection is zero-initialised, so a freshly built conditioned block computes
    exactly what the unconditioned block does: training starts from the looped model.
    """

    def __init__(self, d_model: int, n_frequencies: int = 16, max_period: float = 64.0) -> None:
        super().__init__()
        freqs = torch.exp(-math.log(max_period) * torch.arange(n_frequencies, dtype=torch.float32) / n_frequencies)
        self.register_buffer("freqs", freqs * 2 * math.pi, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * n_frequencies, d_model), nn.SiLU(), nn.Linear(d_model, 4 * d_model))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, tau: torch.Tensor) -> tuple[torch.Tensor, ...]:
        angles = tau.to(self.freqs.dtype).reshape(()) * self.freqs  # (n_frequencies,)
        emb = torch.cat([angles.sin(), angles.cos()]).to(self.mlp[0].weight.dtype)
        return self.mlp(emb).chunk(4)  # shift_attn, scale_attn, shift_mlp, scale_mlp, each (C,)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm x), then + mlp(norm x).

    With `depth_conditioned`, each norm's output is modulated by τ: n * (1 + scale(τ)) + shift(τ).
    With `step_conditioned`, by the step size Δt the same way (its shifts and scales add to τ's);
    Δt = None reads as 0, the instantaneous velocity. Both start at exactly zero.
    """

    def __init__(
        self, d_model: int, n_heads: int, mlp_ratio: float = 4.0, depth_conditioned: bool = False,
        step_conditioned: bool = False, causal: bool = True, rotary: bool = True,
    ) -> None:
        super().__init__()
        self.norm_attn = RMSNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, causal=causal, rotary=rotary)
        self.norm_mlp = RMSNorm(d_model)
        self.mlp = SwiGLU(d_model, int(mlp_ratio * d_model))
        self.depth = DepthConditioning(d_model) if depth_conditioned else None
        self.step = DepthConditioning(d_model, max_period=16.0) if step_conditioned else None
        self.drop = nn.Dropout(0.0)  # residual dropout on both branches (the model sets p: model.dropout)

    def _modulation(self, tau: torch.Tensor | None, dt: torch.Tensor | float | None) -> tuple[torch.Tensor, ...] | None:
        mods = None
        if self.depth is not None:
            if tau is None:
                raise ValueError("a depth-conditioned block needs tau")
            mods = self.depth(tau)
        if self.step is not None:
            dt = torch.as_tensor(0.0 if dt is None else dt, dtype=self.step.freqs.dtype, device=self.step.freqs.device)
            step = self.step(dt)
            mods = step if mods is None else tuple(a + b for a, b in zip(mods, step))
        return mods

    def forward(self, x: torch.Tensor, tau: torch.Tensor | None = None,
                dt: torch.Tensor | float | None = None) -> torch.Tensor:
        a, m = self.norm_attn(x), None
        mods = self._modulation(tau, dt)
        if mods is not None:
            shift_a, scale_a, shift_m, scale_m = mods  # (C,) each
            a = a * (1 + scale_a) + shift_a
        x = x + self._dropout(self.attn(a))  # (B, L, C)
        m = self.norm_mlp(x)
        if mods is not None:
            m = m * (1 + scale_m) + shift_m
        return x + self._dropout(self.mlp(m))  # (B, L, C)

    def _dropout(self, branch: torch.Tensor) -> torch.Tensor:
        return self.drop(branch) if self.drop.p and self.training else branch
