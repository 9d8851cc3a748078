"""Model invariants: causality, teacher-forced vs greedy exact match, the plain baseline."""
from __future__ import annotations

import pytest
import torch

from odelm.data import EncodedExamples, collate
from odelm.depth import Loop, ODESolve
from odelm.evaluation import exact_match
from odelm.model import LatentLM, ModelConfig, TransformerLM
from odelm.tasks import CharTokenizer, Example


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
    """Answers are the model's own greedy continuations (so exact match is 1), then some are
    corrupted; teacher forcing must accept exactly the uncorrupted ones, in mixed-length batches."""
    model = make(integrator).eval()
    tokenizer = CharTokenizer("0123456+")
    prompts = ["1+2", "33+4", "5", "6+6+6", "0+01", "2"]
    examples = []
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([[tokenizer.BOS, *tokenizer.encode(prompt), tokenizer.SEP]])
        out = model.generate(ids, max_new_tokens=4, eos_id=tokenizer.EOS)[0, ids.shape[1]:].tolist()
        answer_ids = out[: out.index(tokenizer.EOS)] if tokenizer.EOS in out else None
        if answer_ids is None or not answer_ids or any(t < 4 for t in answer_ids):
            continue  # greedy did not end in EOS within the budget or emitted a special token
        answer = tokenizer.decode(answer_ids)
        corrupt = i % 2 == 1
        if corrupt:
            answer = answer[:-1] + ("0" if answer[-1] != "0" else "1")
        examples.append((Example(prompt, answer, 1), not corrupt))
    if len(examples) < 2:
        pytest.skip("random model emitted special tokens for most prompts")
    batch = collate([EncodedExamples([ex for ex, _ in examples], tokenizer, "test")[i] for i in range(len(examples))])
    with torch.no_grad():
        matches = exact_match(model(batch.tokens).logits, batch.targets).tolist()
    assert matches == [ok for _, ok in examples]


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
