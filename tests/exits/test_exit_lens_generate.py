"""Logit lens (τ = t_end is the model's output) and per-token exit during generation."""
from __future__ import annotations

import pytest
import torch

from odelm.data import EncodedExamples, collate
from odelm.depth import Loop, ODESolve
from odelm.evaluation import evaluate
from odelm.exits import KV_POLICIES, StateChange, StaticDepth, generate_with_exit, logit_lens
from odelm.model import LatentLM, ModelConfig
from odelm.tasks import CharTokenizer, ModularChain, generate


def model_and_batch(integrator):
    torch.manual_seed(0)
    task = ModularChain(7)
    tokenizer = CharTokenizer(task.alphabet())
    examples = generate(task, [1, 2, 3], 12, seed=0)
    data = EncodedExamples(examples, tokenizer, "test")
    batch = collate([data[i] for i in range(len(data))])
    model = LatentLM(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_heads=2), integrator).eval()
    return model, batch, tokenizer


@pytest.mark.parametrize("integrator", [Loop(3), ODESolve("dopri5", rtol=1e-4, atol=1e-4, t_end=3.0)])
def test_logit_lens_at_t_end_equals_the_model_output(integrator) -> None:
    model, batch, _ = model_and_batch(integrator)
    depths = [0.0, 1.0, 2.0, 3.0]
    with torch.no_grad():
        plain = model(batch.tokens).logits  # no trajectory requested
        out = model(batch.tokens, trajectory_at=depths)
        assert torch.equal(model.decode(out.depth.trajectory[-1]), plain)
        assert torch.equal(model.decode(out.depth.trajectory[0]), model.decode(model.encode(batch.tokens)))
    rows = logit_lens(model, [batch], depths)
    assert [r["depth"] for r in rows] == depths
    final = rows[-1]
    assert final["distance_to_final"] == 0.0 and rows[0]["distance_to_final"] > 0
    assert final["accuracy"] == evaluate(model, [batch])["accuracy"]
    assert all(r["entropy"] > 0 for r in rows)


def test_generation_with_a_static_exit_equals_greedy_generation() -> None:
    model, batch, tokenizer = model_and_batch(Loop(3))
    prompt = batch.tokens[:4, :4]  # equal-length prompts
    reference = model.generate(prompt, max_new_tokens=4, eos_id=tokenizer.EOS)
    for kv in KV_POLICIES:
        out = generate_with_exit(model, prompt, 4, tokenizer.EOS, StaticDepth(), kv=kv)
        assert torch.equal(out.tokens, reference) and (out.depth == 3).all()


def test_per_token_exit_full_policy_reads_each_token_at_its_own_depth() -> None:
    """kv=full: token j equals the greedy token of the same model looped d_j times over the prefix."""
    model, batch, tokenizer = model_and_batch(Loop(6))
    with torch.no_grad():
        for p in model.field.parameters():
            p.mul_(0.5)
    prompt = batch.tokens[:6, :5]
    criterion = StateChange(threshold=0.045)
    out = generate_with_exit(model, prompt, 3, tokenizer.EOS, criterion, kv="full")
    assert out.depth.min() < 6  # the criterion fired somewhere
    for row in range(prompt.shape[0]):
        for j in range(out.depth.shape[1]):
            prefix = out.tokens[row : row + 1, : prompt.shape[1] + j]
            fixed = LatentLM(model.config, Loop(int(out.depth[row, j])))
            fixed.load_state_dict(model.state_dict())
            with torch.no_grad():
                expected = fixed(prefix).logits[0, -1].argmax()
            assert int(out.tokens[row, prompt.shape[1] + j]) == int(expected)
    frozen = generate_with_exit(model, prompt, 3, tokenizer.EOS, criterion, kv="freeze")
    # the first token has no earlier read-out to freeze: both policies agree on it
    assert torch.equal(frozen.tokens[:, : prompt.shape[1] + 1], out.tokens[:, : prompt.shape[1] + 1])
    with pytest.raises(ValueError, match="unknown kv policy 'cache'"):
        generate_with_exit(model, prompt, 1, tokenizer.EOS, criterion, kv="cache")
