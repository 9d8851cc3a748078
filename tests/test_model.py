"""Model invariants: causality, teacher-forced vs greedy exact match, the plain baseline."""
from __future__ import annotations

import math

import pytest
import torch

from odelm.data import collate
from odelm.depth import Loop, ODESolve
from odelm.evaluation import exact_match
from odelm.model import LatentLM, ModelConfig, TransformerLM
from odelm.tasks import CharTokenizer


def make(integrator=None, **overrides):
    cfg = ModelConfig(vocab_size=12, d_model=32, n_heads=2, **overrides)
    return TransformerLM(cfg) if integrator is None else LatentLM(cfg, integrator)


@pytest.mark.parametrize(
    "integrator,tol",
    [(Loop(3), 0.0), (ODESolve("rk4", step_size=0.5, t_end=2.0), 0.0), (None, 0.0),
     # adaptive: one step size for the whole tensor, so later tokens can move earlier logits
     # by about the solver tolerance (stated and bounded here)
     (ODESolve("dopri5", rtol=1e-6, atol=1e-6, t_end=2.0), 1e-4)],
)
def test_causality(integrator, tol: float) -> None:
    model = make(integrator, n_prelude=1, n_coda=1)
    tokens = torch.randint(0, 12, (2, 10))
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 5) % 12
    with torch.no_grad():
        a, b = model(tokens).logits, model(changed).logits
    assert (a[:, :6] - b[:, :6]).abs().max().item() <= tol
    assert (a[:, 6:] - b[:, 6:]).abs().max().item() > 1e-3  # the change did reach later positions


@pytest.mark.parametrize("integrator", [Loop(3), ODESolve("euler", step_size=1.0, t_end=3.0), None])
def test_teacher_forced_exact_match_equals_greedy(integrator) -> None:
    """Targets are the model's own greedy continuations (so teacher-forced exact match must be 1),
    then every other example is corrupted at one position (so it must be 0) — in one batch of
    prompts of different lengths, padded on the right."""
    model = make(integrator).eval()
    prompts = [[5, 6, 7], [8, 9, 10, 11, 5, 6], [4], [7, 7, 7, 7, 7]]
    items, expected = [], []
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([[CharTokenizer.BOS, *prompt, CharTokenizer.SEP]])
        greedy = model.generate(ids, max_new_tokens=3, eos_id=-1)[0].tolist()  # 3 tokens, any ids
        corrupt = i % 2 == 1
        if corrupt:
            greedy[-2] = (greedy[-2] + 1) % 12
        items.append((greedy, len(prompt) + 2, 1, i))
        expected.append(not corrupt)
    batch = collate(items)
    with torch.no_grad():
        matches = exact_match(model(batch.tokens).logits, batch.targets).tolist()
    assert matches == expected


def test_transformer_baseline_has_distinct_layers_and_counts_them() -> None:
    looped = make(Loop(4))
    plain = make(None, n_layers=4)
    # same embedding/head; 4 distinct blocks vs 1 shared block
    block = sum(p.numel() for p in looped.field.parameters())
    assert plain.num_params() - looped.num_params() == 3 * block
    out = plain(torch.randint(0, 12, (2, 5)))
    assert out.depth.nfe_forward == 4 and out.logits.shape == (2, 5, 12)


def test_bad_model_config_names_the_value() -> None:
    with pytest.raises(ValueError, match="n_heads=3"):
        ModelConfig(vocab_size=10, d_model=32, n_heads=3)
    with pytest.raises(ValueError, match="model.field_blocks must be an integer >= 1, got 0"):
        ModelConfig(vocab_size=10, field_blocks=0)
    with pytest.raises(ValueError, match="unknown injection 'mul'"):
        LatentLM(ModelConfig(vocab_size=10, injection="mul"), Loop(2))


def test_flops_per_token_match_iso_flop_counterparts() -> None:
    """Forward matmul FLOPs: one shared block evaluated T times costs what T distinct layers cost;
    each evaluation adds the block's 2·(4C² + 3·C·hidden) FLOPs; τ-conditioning (per evaluation, not
    per token) is not counted."""
    c = ModelConfig(vocab_size=20, d_model=32, n_heads=2)
    looped = LatentLM(c, Loop(4))
    transformer = TransformerLM(ModelConfig(vocab_size=20, d_model=32, n_heads=2, n_layers=4))
    assert looped.flops_per_token(4) == transformer.flops_per_token()
    block = 2 * (4 * 32 * 32 + 3 * 32 * int(4.0 * 32))
    head = 2 * 32 * 20
    assert looped.flops_per_token(1) == head + block and looped.flops_per_token(8) == head + 8 * block
    conditioned = LatentLM(ModelConfig(vocab_size=20, d_model=32, n_heads=2, depth_conditioned=True), Loop(4))
    assert conditioned.flops_per_token(4) == looped.flops_per_token(4)


# --- positions: learned absolute table and/or rotary ---------------------------------------------

@pytest.mark.parametrize("integrator", [Loop(3), None])
@pytest.mark.parametrize("rotary", [True, False])
def test_learned_positions_keep_causality(integrator, rotary: bool) -> None:
    model = make(integrator, pos_embedding="learned", max_len=10, rotary=rotary)
    tokens = torch.randint(0, 12, (2, 10))
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 5) % 12
    with torch.no_grad():
        a, b = model(tokens).logits, model(changed).logits
    assert torch.equal(a[:, :6], b[:, :6])


def test_without_any_position_signal_a_causal_model_cannot_tell_where_a_token_is() -> None:
    """No rotary, no table: the first token's output depends on its id alone (so position must come
    from one of the two); the learned table makes the same token at different positions differ."""
    tokens = torch.tensor([[5, 5, 5, 5]])
    bare = make(Loop(2), rotary=False)
    learned = make(Loop(2), rotary=False, pos_embedding="learned", max_len=4)
    with torch.no_grad():
        flat = bare(tokens).logits[0]  # (L, V): every position attends to identical inputs
        varied = learned(tokens).logits[0]
    assert (flat - flat[0]).abs().max().item() < 1e-5
    assert (varied - varied[0]).abs().max().item() > 1e-4


def test_learned_positions_need_a_length_and_refuse_longer_inputs() -> None:
    with pytest.raises(ValueError, match="model.max_len"):
        make(Loop(2), pos_embedding="learned")
    with pytest.raises(ValueError, match="pos_embedding 'absolute'"):
        make(Loop(2), pos_embedding="absolute")
    model = make(Loop(2), pos_embedding="learned", max_len=5)
    with pytest.raises(ValueError, match="longer than model.max_len=5"):
        model(torch.zeros(1, 6, dtype=torch.long))


def test_loop_equals_euler_with_learned_positions() -> None:
    model = make(Loop(3), pos_embedding="learned", max_len=8, n_prelude=1)
    tokens = torch.randint(0, 12, (3, 8))
    with torch.no_grad():
        looped = model(tokens).logits
        model.integrator = ODESolve("euler", step_size=1.0, t_end=3.0)
        euler = model(tokens).logits
    torch.testing.assert_close(looped, euler, rtol=0, atol=1e-6)


def test_grid_positions_read_rows_and_columns_from_the_row_end_token() -> None:
    from odelm.model import grid_positions

    tok = CharTokenizer("ab|")
    ids = torch.tensor([tok.encode("ab|ba|"), tok.encode("a|b|a|")])  # widths 2 and 1
    pos = grid_positions(ids, tok.encode("|")[0])
    assert pos[0].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert pos[1].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1]]


def test_grid_rotary_scores_depend_on_the_row_and_column_offsets_only() -> None:
    """With 2-D rotary positions the query-key score of two cells is a function of (Δrow, Δcol): the
    same for a vertical neighbour in a narrow and in a wide grid, and translation invariant; with 1-D
    positions a vertical neighbour's score changes with the grid width."""
    from odelm.nn import Rotary

    torch.manual_seed(0)
    rot = Rotary(32)
    q, k = torch.randn(1, 1, 1, 32), torch.randn(1, 1, 1, 32)

    def score(pq, pk):
        cos, sin = rot.cos_sin_grid(torch.tensor([[pq, pk]]), torch.float32)  # (1, 1, 2, 16)
        rq = Rotary.rotate(q, cos[:, :, :1], sin[:, :, :1])
        rk = Rotary.rotate(k, cos[:, :, 1:], sin[:, :, 1:])
        return (rq * rk).sum().item()

    assert score([0, 0], [1, 0]) == pytest.approx(score([5, 7], [6, 7]), abs=1e-5)  # translation
    assert score([2, 3], [1, 5]) == pytest.approx(score([12, 9], [11, 11]), abs=1e-5)
    assert score([0, 0], [1, 0]) != pytest.approx(score([0, 0], [0, 1]), abs=1e-3)  # the axes differ

    def score_1d(i, j):
        cos, sin = rot.cos_sin(64, torch.device("cpu"), torch.float32)
        return (Rotary.rotate(q, cos[i:i + 1], sin[i:i + 1]) * Rotary.rotate(k, cos[j:j + 1], sin[j:j + 1])).sum().item()

    assert score_1d(0, 6) != pytest.approx(score_1d(0, 10), abs=1e-3)  # widths 5 and 9 (+ row end)


@pytest.mark.parametrize("integrator", [Loop(3), ODESolve(method="rk4", t_end=1.0, step_size=0.5)])
def test_a_grid_model_attends_by_row_and_column(integrator) -> None:
    """model.row_end reaches every attention of the field (loop and ODE alike): the same weights give
    another answer than with 1-D positions, and an example's answer is the same alone and padded in a
    batch with a larger grid (padding is outside every row)."""
    from odelm.nn import CausalSelfAttention

    tok = CharTokenizer("01|")
    grid = ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, causal=False, row_end_id=tok.encode("|")[0])
    flat = ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, causal=False)
    torch.manual_seed(0)
    model = LatentLM(grid, integrator).eval()
    twin = LatentLM(flat, integrator).eval()
    twin.load_state_dict(model.state_dict())
    small = tok.encode("011|101|110|")
    with torch.no_grad():
        alone = model(torch.tensor([small])).logits[0]
        assert all(m.grid_positions is not None for m in model.modules() if isinstance(m, CausalSelfAttention))
        assert not torch.allclose(alone, twin(torch.tensor([small])).logits[0], atol=1e-4)
        big = tok.encode("0110|1010|1100|0001|")
        batch = torch.tensor([small + [0] * (len(big) - len(small)), big])
        padded = model(batch).logits[0, :len(small)]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
    if isinstance(integrator, Loop):  # the loop is still explicit Euler with step 1 under 2-D positions
        with torch.no_grad():
            model.integrator = ODESolve("euler", step_size=1.0, t_end=3.0)
            euler = model(torch.tensor([small])).logits[0]
        torch.testing.assert_close(euler, alone, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="head size divisible by 4"):
        ModelConfig(vocab_size=5, d_model=12, n_heads=2, row_end_id=1)


@pytest.mark.parametrize("padding,score", [("zeros", "softmax"), ("none", "softmax"), ("zeros", "sigmoid")])
@pytest.mark.parametrize("causal", [True, False])
def test_a_local_window_limits_how_far_one_evaluation_reaches(causal: bool, padding: str, score: str) -> None:
    """model.attn_window=w: after k field evaluations (one block each, no prelude or coda) a token moves
    the logits of positions at most k·w away and no farther; without edge padding a window as long as
    the input is full attention (the same weights give the same logits)."""
    w, k, length, at = 2, 2, 16, 8
    torch.manual_seed(0)
    local = make(Loop(k), attn_window=w, causal=causal, window_padding=padding, attn_score=score).eval()
    tokens = torch.randint(1, 12, (1, length))
    changed = tokens.clone()
    changed[0, at] = tokens[0, at] % 11 + 1  # another real token
    with torch.no_grad():
        moved = (local(tokens).logits - local(changed).logits).abs().amax(-1)[0]  # (L,)
        if padding == "none":
            full = make(Loop(k), causal=causal).eval()
            full.load_state_dict(local.state_dict())
            wide = make(Loop(k), attn_window=length, causal=causal, window_padding="none").eval()
            wide.load_state_dict(local.state_dict())
            torch.testing.assert_close(wide(tokens).logits, full(tokens).logits, rtol=0, atol=1e-6)
    reach = range(at, at + k * w + 1) if causal else range(at - k * w, at + k * w + 1)
    for i in range(length):
        if i in reach:
            assert moved[i] > 1e-4, (i, moved)
        else:
            assert moved[i] == 0.0, (i, moved)


@pytest.mark.parametrize("causal", [True, False])
def test_zero_padding_counts_the_keys_a_window_misses_as_zero_keys(causal: bool) -> None:
    """window_padding=zeros equals attention over the real keys plus one zero key (score 0, value 0)
    for every key the window misses at an edge, written out by hand here from the same q, k, v."""
    from odelm.nn import CausalSelfAttention

    torch.manual_seed(0)
    w, length = 2, 5
    attn = CausalSelfAttention(8, 2, causal=causal, rotary=False)
    attn.window = w
    x = torch.randn(1, length, 8)
    q, k, v = (t.view(1, length, 2, 4).transpose(1, 2) for t in attn.qkv(x).split(8, dim=-1))  # (1, H, L, hd)
    expected = torch.zeros(1, 2, length, 4)
    for i in range(length):
        keys = [j for j in range(length) if (i - w <= j <= i if causal else abs(i - j) <= w)]
        full = w + 1 if causal else 2 * w + 1
        scores = (q[:, :, i:i + 1] @ k[:, :, keys].transpose(-1, -2)) / 2.0  # (1, H, 1, n): scale 1/sqrt(4)
        scores = torch.cat([scores, torch.zeros(1, 2, 1, full - len(keys))], dim=-1)  # the missing keys
        weights = scores.softmax(-1)[..., :len(keys)]
        expected[:, :, i] = (weights @ v[:, :, keys])[:, :, 0]
    with torch.no_grad():
        got = attn(x)
    torch.testing.assert_close(got, attn.proj(expected.transpose(1, 2).reshape(1, length, 8)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_sigmoid_scores_sum_the_window_keys_each_weighed_on_its_own(causal: bool) -> None:
    """model.attn_score=sigmoid: y_i = Σ_j σ(q_i·k_j/√hd − log n) v_j over i's window (n keys in a full
    window), written out by hand from the same q, k, v; a key the window misses adds nothing."""
    from odelm.nn import CausalSelfAttention

    torch.manual_seed(0)
    w, length = 2, 6
    attn = CausalSelfAttention(8, 2, causal=causal, rotary=False)
    attn.window, attn.score = w, "sigmoid"
    x = torch.randn(1, length, 8)
    q, k, v = (t.view(1, length, 2, 4).transpose(1, 2) for t in attn.qkv(x).split(8, dim=-1))  # (1, H, L, hd)
    full = w + 1 if causal else 2 * w + 1
    expected = torch.zeros(1, 2, length, 4)
    for i in range(length):
        keys = [j for j in range(length) if (i - w <= j <= i if causal else abs(i - j) <= w)]
        scores = (q[:, :, i:i + 1] @ k[:, :, keys].transpose(-1, -2)) / 2.0  # (1, H, 1, n): scale 1/sqrt(4)
        expected[:, :, i] = (torch.sigmoid(scores - math.log(full)) @ v[:, :, keys])[:, :, 0]
    with torch.no_grad():
        got = attn(x)
        attn.window_padding = "none"  # nothing to pad when missing keys add nothing
        same = attn(x)
    torch.testing.assert_close(got, attn.proj(expected.transpose(1, 2).reshape(1, length, 8)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(same, got, rtol=0, atol=0)


def test_sigmoid_scores_count_where_the_softmax_averages() -> None:
    """With equal scores a softmax returns the mean of the values whatever their number; the sigmoid
    window returns a sum, so a query that sees more copies of a value gets more of it (a count)."""
    from odelm.nn import CausalSelfAttention

    attn = CausalSelfAttention(4, 1, causal=False, rotary=False)
    attn.window = 1
    with torch.no_grad():
        attn.qkv.weight.zero_()
        attn.qkv.weight[8:].copy_(torch.eye(4))  # q = k = 0, v = x
        attn.proj.weight.copy_(torch.eye(4))
        x = torch.ones(1, 3, 4)  # the middle query sees 3 keys, the edge ones 2
        zero_padded = attn(x)[0, :, 0]  # softmax with the missing keys as zero keys: 2/3 at the edges
        attn.score = "sigmoid"  # the same batch: the cached zero-padding bias must not be reused
        total = attn(x)[0, :, 0]
        attn.score, attn.window_padding = "softmax", "none"  # the softmax over the real keys alone
        mean = attn(x)[0, :, 0]
    weight = 1 / (1 + 3)  # σ(0 − log 3)
    torch.testing.assert_close(total, torch.tensor([2 * weight, 3 * weight, 2 * weight]))
    torch.testing.assert_close(mean, torch.tensor([1.0, 1.0, 1.0]))
    torch.testing.assert_close(zero_padded, torch.tensor([2 / 3, 1.0, 2 / 3]))


def test_sigmoid_scores_need_a_window_and_a_known_name() -> None:
    with pytest.raises(ValueError, match="model.attn_score=sigmoid .* needs model.attn_window"):
        ModelConfig(vocab_size=5, d_model=16, n_heads=2, attn_score="sigmoid")
    with pytest.raises(ValueError, match="model.attn_score must be one of .* got 'relu'"):
        ModelConfig(vocab_size=5, d_model=16, n_heads=2, attn_window=1, attn_score="relu")


def test_a_local_window_on_a_grid_is_a_square_and_ignores_padding() -> None:
    """On grid text (model.row_end) the window is a square of rows and columns: with w = 1 and one
    evaluation, changing the centre cell of a 5×5 grid moves exactly its 3×3 neighbourhood (the row-end
    tokens sit in column 5). Padding a batch leaves an example's logits unchanged (no NaN from a padding
    query whose window holds no real key)."""
    tok = CharTokenizer("01|")
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, causal=False,
                      row_end_id=tok.encode("|")[0], attn_window=1)
    torch.manual_seed(0)
    model = LatentLM(cfg, Loop(1)).eval()
    rows = ["01101", "10010", "01011", "11000", "00111"]
    text = "".join(r + "|" for r in rows)
    centre = 2 * 6 + 2
    flipped = text[:centre] + ("1" if text[centre] == "0" else "0") + text[centre + 1:]
    with torch.no_grad():
        a = model(torch.tensor([tok.encode(text)])).logits[0]
        moved = (a - model(torch.tensor([tok.encode(flipped)])).logits[0]).abs().amax(-1)  # (L,)
        small = tok.encode("01|10|")
        padded = model(torch.tensor([small + [CharTokenizer.PAD] * (len(text) - len(small)), tok.encode(text)])).logits
        alone = model(torch.tensor([small])).logits[0]
    near = {r * 6 + c for r in (1, 2, 3) for c in (1, 2, 3)}
    assert {i for i in range(len(text)) if moved[i] > 1e-4} == near
    assert all(moved[i] == 0.0 for i in range(len(text)) if i not in near)
    assert torch.isfinite(padded).all()
    torch.testing.assert_close(padded[0, :len(small)], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_bad_attention_window_is_named(bad) -> None:
    with pytest.raises(ValueError, match="model.attn_window"):
        ModelConfig(vocab_size=5, d_model=16, n_heads=2, attn_window=bad)
    with pytest.raises(ValueError, match="model.window_padding must be one of"):
        ModelConfig(vocab_size=5, d_model=16, n_heads=2, attn_window=1, window_padding="reflect")


@pytest.mark.parametrize("padding", ["zeros", "none"])
def test_the_window_bias_is_built_once_per_batch_and_never_reused_for_another(padding: str,
                                                                                monkeypatch) -> None:
    """The window's mask and bias depend only on the encoded batch (its padding, its grid positions), so
    one solve builds them once for all its field evaluations. A second batch of the same shape but
    other rows, other padding and other grid positions must get its own: its logits after the first
    batch equal those of a fresh model that never saw the first (a stale mask would move them)."""
    from odelm.nn import CausalSelfAttention

    tok = CharTokenizer("01|")
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, causal=False,
                      row_end_id=tok.encode("|")[0], attn_window=1, window_padding=padding)
    torch.manual_seed(0)
    model = LatentLM(cfg, Loop(4)).eval()
    fresh = LatentLM(cfg, Loop(4)).eval()
    fresh.load_state_dict(model.state_dict())
    pad = CharTokenizer.PAD

    def batch(texts: list[str]) -> torch.Tensor:
        rows = [tok.encode(t) for t in texts]
        width = max(map(len, rows))
        return torch.tensor([r + [pad] * (width - len(r)) for r in rows])

    first = batch(["0110|1010|1100|", "01|10|"])  # 3 rows of 4, and 2 rows of 2 padded
    second = batch(["01|10|", "01|10|11|00|01|"])  # same shape: the padding and the rows moved
    assert first.shape == second.shape
    builds = []
    original = CausalSelfAttention._local_mask
    monkeypatch.setattr(CausalSelfAttention, "_local_mask",
                        lambda self, *a: builds.append(1) or original(self, *a))
    with torch.no_grad():
        model(first)
        assert len(builds) == 1  # one attention module, 4 evaluations: built once
        got = model(second).logits
        assert len(builds) == 2
        expected = fresh(second).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("grid", [True, False])
@pytest.mark.parametrize("causal", [True, False])
def test_inference_mode_neither_breaks_attention_nor_poisons_its_caches(causal: bool, grid: bool) -> None:
    """A forward under torch.inference_mode (Lightning's default for validate/test) works for windowed,
    padded and grid models, and a training step after it still back-propagates: no constant cached under
    inference mode (rotary angles, window masks) is reused by a graph autograd must save."""
    tok = CharTokenizer("01|")
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, causal=causal,
                      row_end_id=tok.encode("|")[0] if grid else None, attn_window=1)
    torch.manual_seed(0)
    model = LatentLM(cfg, Loop(2))
    pad = CharTokenizer.PAD
    rows = [tok.encode("0110|1010|"), tok.encode("01|10|")]
    tokens = torch.tensor([r + [pad] * (10 - len(r)) for r in rows])
    with torch.inference_mode():
        inferred = model(tokens).logits
    with torch.no_grad():
        expected = model(tokens).logits
    torch.testing.assert_close(inferred, expected, rtol=0, atol=0)
    with torch.inference_mode():
        model(tokens)  # the caches now hold inference tensors
    model(tokens).logits.square().mean().backward()
    assert all(p.grad is not None for p in model.field.parameters() if p.requires_grad)


@pytest.mark.parametrize("integrator", [Loop(3), ODESolve("euler", step_size=0.5, t_end=2.0), None])
def test_dropout_acts_in_training_only_and_draws_a_fresh_mask_at_every_evaluation(integrator) -> None:
    torch.manual_seed(0)
    plain = make(integrator)
    dropped = make(integrator, dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, 12, (2, 7))
    with torch.no_grad():
        dropped.eval()
        assert torch.equal(dropped(tokens).logits, plain.eval()(tokens).logits)  # evaluation: no dropout
        dropped.train()
        a, b = dropped(tokens).logits, dropped(tokens).logits
    assert (a - b).abs().max().item() > 1e-3  # training: random masks, so two passes differ
    if integrator is not None:  # one shared block: its mask must not be fixed across the loop's steps
        block = dropped.field.blocks[0]
        masks = []
        block.drop.register_forward_hook(lambda _m, inp, out: masks.append((out == 0) & (inp[0] != 0)))
        with torch.no_grad():
            dropped(tokens)
        assert len(masks) >= 2 * 3 and not torch.equal(masks[0], masks[2])  # two branches per evaluation


@pytest.mark.parametrize("integrator", [Loop(3), None])
def test_dropout_zero_trains_the_model_that_evaluates(integrator) -> None:
    """model.dropout=0 (the default): training mode computes exactly what evaluation does, whatever the
    random stream, so every recipe measured before the option existed is unchanged."""
    torch.manual_seed(0)
    model = make(integrator)
    tokens = torch.randint(0, 12, (2, 7))
    with torch.no_grad():
        evaluated = model.eval()(tokens).logits
        torch.manual_seed(1)
        assert torch.equal(model.train()(tokens).logits, evaluated)


@pytest.mark.parametrize("bad", [-0.1, 1.0, True, "0.1"])
def test_a_bad_dropout_is_named(bad) -> None:
    with pytest.raises(ValueError, match=f"model.dropout must be a number in \\[0, 1\\), got {bad!r}"):
        ModelConfig(vocab_size=10, dropout=bad)
