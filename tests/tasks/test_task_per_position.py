"""Per-position answers with bidirectional attention: the model sees later tokens, ignores right padding,
keeps Loop ≡ Euler; the data layout, augmentation, constraint metrics through train/eval sweeps, exits on
padded batches, and the errors for settings that cannot work."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from odelm import eval as odelm_eval
from odelm import train
from odelm.build import ConfigError, build_data
from odelm.data import IGNORE, EncodedExamples, collate_per_position
from odelm.depth import Loop, ODESolve
from odelm.evaluation import AnswerScorer, EvalAccumulator
from odelm.exits import AdaptiveDepth, StateChange, generate_with_exit
from odelm.model import LatentLM, ModelConfig, TransformerLM
from odelm.tasks import CharTokenizer, Example, Sudoku

from conftest import SMALL_RUN, compose_config

V = 12


def make(integrator=None, causal=False, **overrides):
    cfg = ModelConfig(vocab_size=V, d_model=32, n_heads=2, causal=causal, **overrides)
    return (TransformerLM(cfg) if integrator is None else LatentLM(cfg, integrator)).eval()


INTEGRATORS = [Loop(3), ODESolve("rk4", step_size=0.5, t_end=2.0), None]


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_bidirectional_model_sees_later_tokens(integrator) -> None:
    model = make(integrator, n_prelude=1, n_coda=1)
    tokens = torch.randint(4, V, (2, 10))
    changed = tokens.clone()
    changed[:, 7:] = (changed[:, 7:] - 4 + 3) % (V - 4) + 4
    with torch.no_grad():
        a, b = model(tokens).logits, model(changed).logits
    assert (a[:, :7] - b[:, :7]).abs().max().item() > 1e-4  # earlier positions read the later tokens
    causal = make(integrator, causal=True, n_prelude=1, n_coda=1)
    causal.load_state_dict(model.state_dict())  # same weights: only the attention kind differs
    with torch.no_grad():
        assert torch.equal(causal(tokens).logits[:, :7], causal(changed).logits[:, :7])


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_right_padding_and_batch_order_do_not_change_a_row(integrator) -> None:
    """A row's logits are the same alone, in a padded batch beside a longer row, and with the rows swapped."""
    model = make(integrator)
    short = torch.randint(4, V, (1, 6))
    long = torch.randint(4, V, (1, 10))
    batch = torch.full((2, 10), CharTokenizer.PAD)
    batch[0, :6], batch[1] = short[0], long[0]
    with torch.no_grad():
        alone_short, alone_long = model(short).logits, model(long).logits
        together = model(batch).logits
        swapped = model(batch.flip(0)).logits
    torch.testing.assert_close(together[0, :6], alone_short[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[1], alone_long[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(swapped.flip(0), together, atol=1e-6, rtol=1e-6)


def test_without_the_key_mask_padding_would_leak() -> None:
    """The padding test above has teeth: with the mask switched off, padding moves the short row's logits."""
    model = make(Loop(2))
    tokens = torch.randint(4, V, (1, 6))
    padded = torch.cat([tokens, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    model.set_padding = lambda tokens: None  # never set a mask
    with torch.no_grad():
        diff = (model(padded).logits[0, :6] - model(tokens).logits[0]).abs().max().item()
    assert diff > 1e-4


def test_loop_equals_euler_for_the_bidirectional_model() -> None:
    model = make(Loop(4), injection="add")
    tokens = torch.randint(4, V, (3, 9))
    tokens[0, 5:] = CharTokenizer.PAD
    with torch.no_grad():
        looped = model(tokens, trajectory_at=[0, 1, 2, 3, 4])
        model.integrator = ODESolve("euler", step_size=1.0, t_end=4)
        euler = model(tokens, trajectory_at=[0, 1, 2, 3, 4])
    assert torch.equal(looped.logits, euler.logits)
    assert torch.equal(looped.depth.trajectory, euler.depth.trajectory)


@pytest.mark.parametrize("integrator", [Loop(3), ODESolve("dopri5", rtol=1e-3, atol=1e-3, t_end=3.0)])
def test_exit_on_a_padded_bidirectional_batch_matches_each_row_alone(integrator) -> None:
    model = make(integrator)
    rows = [torch.randint(4, V, (n,)) for n in (5, 9, 5, 7)]
    batch = torch.zeros(4, 9, dtype=torch.long)
    for i, r in enumerate(rows):
        batch[i, : len(r)] = r
    exit_ = AdaptiveDepth(StateChange(threshold=0.05))
    out = exit_(model, batch, batch != CharTokenizer.PAD)
    for i, r in enumerate(rows):
        alone = exit_(model, r[None], torch.ones(1, len(r), dtype=torch.bool))
        torch.testing.assert_close(out.logits[i, : len(r)], alone.logits[0], atol=1e-5, rtol=1e-5)
        assert out.depth[i] == pytest.approx(float(alone.depth[0]), abs=1e-5)


def test_generation_is_refused_for_a_bidirectional_model() -> None:
    model = make(Loop(2))
    with pytest.raises(ValueError, match="generate needs a causal model"):
        model.generate(torch.ones(1, 3, dtype=torch.long), 2, 3)
    with pytest.raises(ValueError, match="generate_with_exit needs a causal model"):
        generate_with_exit(model, torch.ones(1, 3, dtype=torch.long), 2, 3, StateChange(threshold=0.1))


def test_per_position_collate_aligns_answer_with_prompt() -> None:
    tok = CharTokenizer("01.")
    examples = [Example("01", "11", 2), Example("0.10", "0110", 4)]
    data = EncodedExamples(examples, tok, "test", layout="per_position")
    batch = data.collate([data[0], data[1]])
    assert batch.tokens.tolist() == [tok.encode("01") + [CharTokenizer.PAD] * 2, tok.encode("0.10")]
    assert batch.targets.tolist() == [tok.encode("11") + [IGNORE] * 2, tok.encode("0110")]
    with pytest.raises(ConfigError, match="test example 0: per-position example '01': prompt has 2 characters and answer 3"):
        EncodedExamples([Example("01", "011", 2)], tok, "test", layout="per_position")


def test_augmentation_is_seeded_and_for_training_only() -> None:
    task = Sudoku(2, 2)
    examples = [task.sample(random.Random(i), 8) for i in range(4)]
    tok = CharTokenizer(task.alphabet())
    train_a = EncodedExamples(examples, tok, "train", "per_position", augment=task, seed=3)
    train_b = EncodedExamples(examples, tok, "train", "per_position", augment=task, seed=3)
    test = EncodedExamples(examples, tok, "test", "per_position")
    draws_a = [train_a[0][0] for _ in range(5)]
    assert draws_a == [train_b[0][0] for _ in range(5)]  # seeded
    assert len({tuple(d) for d in draws_a}) > 1  # redrawn at every access
    for ids, answer, *_ in (train_a[i] for i in range(4)):  # every variant is still a valid puzzle
        assert task.check(Example(tok.decode(ids), tok.decode(answer), 8))
    assert [test[0][0] for _ in range(3)] == [tok.encode(examples[0].prompt)] * 3


def test_scorer_reads_every_position_and_marks_special_ids() -> None:
    task = Sudoku(2, 2)
    ex = Example("12..34..2143....", "1234341221434321", 6)
    tok = CharTokenizer(task.alphabet())
    data = EncodedExamples([ex, ex], tok, "test", "per_position")
    batch = collate_per_position([data[0], data[1]])
    logits = torch.nn.functional.one_hot(batch.targets, tok.vocab_size).float()
    logits[1, 0] = torch.nn.functional.one_hot(torch.tensor(CharTokenizer.BOS), tok.vocab_size).float()
    scorer = AnswerScorer(task, tok, [ex, ex], "per_position")
    assert scorer.answers(None, batch, logits) == [ex.answer, "?" + ex.answer[1:]]
    acc = EvalAccumulator()
    acc.add(batch, logits, 1.0, scores=scorer(None, batch, logits))
    summary = acc.summary()
    assert summary["accuracy"] == 0.5 and summary["cell_accuracy"] == 31 / 32
    assert summary["constraint_satisfied"] == 0.5 and summary["violations"] == 1.0  # a given lost (a non-digit)
    assert summary["answer_metrics"] == ["constraint_satisfied", "violations"]


SUDOKU = SMALL_RUN + ["task=sudoku", "model.causal=false", "task.n_train=128", "task.n_test_per_difficulty=6",
                      "task.train_difficulties=[2,4]", "task.test_difficulties=[2,4,6]"]


@pytest.fixture(scope="module")
def sudoku_run(tmp_path_factory) -> dict:
    cfg = compose_config("train", SUDOKU + ["model.loops=2"])
    return train.run(cfg, run_dir=tmp_path_factory.mktemp("sudoku") / "run")


def test_sudoku_run_reports_constraint_metrics_per_difficulty(sudoku_run: dict) -> None:
    record = json.loads((Path(sudoku_run["run_dir"]) / "metrics.json").read_text())
    for key in ("accuracy", "cell_accuracy", "constraint_satisfied", "violations"):
        assert set(record[f"{key}_by_difficulty"]) == {"2", "4", "6"}
    assert 0 <= record["constraint_satisfied"] <= 1 and record["violations"] >= 0
    assert record["constraint_satisfied"] >= record["accuracy"] - 1e-9  # a unique puzzle: solved ⇒ satisfied


def test_eval_sweep_carries_constraint_metrics(sudoku_run: dict, tmp_path: Path) -> None:
    given = [f"ckpt={sudoku_run['checkpoint']}", "sweep.key=model.loops", "sweep.values=[1,3]"]
    record = odelm_eval.run(compose_config("eval", given), run_dir=tmp_path / "ev", overrides=given)
    rows = record["sweep"]["rows"]
    assert [r["value"] for r in rows] == [1, 3] and [r["nfe_forward"] for r in rows] == [1.0, 3.0]
    header = (tmp_path / "ev" / "sweep.csv").read_text().splitlines()[0].split(",")
    for column in ("cell_accuracy", "constraint_satisfied", "violations", "constraint_satisfied_d6", "violations_d2"):
        assert column in header
    given = [f"ckpt={sudoku_run['checkpoint']}", "exit=state_change", "model.integrator=ode", "solver=rk4",
             "solver.step_size=0.5"]
    record = odelm_eval.run(compose_config("eval", given), run_dir=tmp_path / "ex", overrides=given)
    assert "constraint_satisfied" in record and record["exit"]["name"] == "state_change"


@pytest.mark.parametrize("overrides", [["model=ode", "solver=rk4", "solver.step_size=1", "solver.t_end=2"],
                                       ["model=transformer", "model.n_layers=2"],
                                       ["model.row_end=|"]])  # 2-D rotary positions
def test_ode_and_transformer_train_on_mazes_of_mixed_sizes(overrides: list[str], tmp_path: Path) -> None:
    cfg = compose_config("train", SMALL_RUN + ["task=maze", "model.causal=false", "task.n_train=64",
                                               "task.n_test_per_difficulty=4", "task.test_difficulties=[2,5]",
                                               *overrides])
    record = train.run(cfg, run_dir=tmp_path / "run")
    assert set(record["valid_shortest_path_by_difficulty"]) == {"2", "5"}
    if "model.row_end=|" in overrides:  # resolved to the vocabulary's id, stored for eval
        from omegaconf import OmegaConf
        stored = OmegaConf.load(Path(record["run_dir"]) / "config.yaml")
        assert stored.model.row_end == "|" and isinstance(stored.model.row_end_id, int)
        with pytest.raises(ConfigError, match="model.row_end must be one character of the task's alphabet.*'x'"):
            train.run(compose_config("train", SMALL_RUN + ["task=maze", "model.causal=false", "model.row_end=x"]),
                      run_dir=tmp_path / "bad")


def test_causal_model_on_prefix_parity(tmp_path: Path) -> None:
    cfg = compose_config("train", SMALL_RUN + ["task=prefix_parity", "task.n_train=64", "task.n_test_per_difficulty=4"])
    record = train.run(cfg, run_dir=tmp_path / "run")
    assert set(record["cell_accuracy_by_difficulty"]) == {"16", "32", "64"}


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["model.causal=false"], "model.causal=false needs a per-position task"),
        (["task=sudoku", "task.layout=suffix"], "task.layout=suffix contradicts task 'sudoku'"),
        (["task=sudoku", "model.causal=maybe"], "model.causal must be true or false"),
        (["task=sudoku", "task.params.box_rows=5"], "box_rows × box_cols = 10 digits"),
    ],
)
def test_bad_settings_fail_before_training(overrides: list[str], match: str, tmp_path: Path) -> None:
    cfg = compose_config("train", SMALL_RUN + ["task.n_train=32", "task.n_test_per_difficulty=2", *overrides])
    with pytest.raises(ConfigError, match=match):
        train.run(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def jsonl(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text("".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in rows))
    return str(path)


GOOD = ("12..34..2143....", "1234341221434321")


@pytest.mark.parametrize(
    "bad,match",
    [
        (("12..34..2143...", "1234341221434321"), "example 2: sudoku 4x4: prompt '12..34..2143...' has 15 characters"),
        (("12..34..2143...x", "1234341221434321"), "example 2: sudoku 4x4: prompt .* characters 'x' outside"),
        (("11..............", "1234341221434321"), "example 2: sudoku: puzzle '11.*' has no solution"),
    ],
)
def test_user_grid_files_are_validated_naming_the_example(bad, match: str, tmp_path: Path) -> None:
    train_file = jsonl(tmp_path / "train.jsonl", [GOOD, bad])
    test_file = jsonl(tmp_path / "test.jsonl", [GOOD])
    cfg = compose_config("train", SMALL_RUN + ["task=jsonl", f"task.train={train_file}", f"task.test={test_file}",
                                               "task.layout=per_position", "task.checker=sudoku",
                                               "+task.params.box_rows=2", "+task.params.box_cols=2"])
    with pytest.raises(ConfigError, match=match):
        build_data(cfg, seed=0)


def test_user_per_position_file_trains_and_is_scored_by_its_checker(tmp_path: Path) -> None:
    task = Sudoku(2, 2)
    rng = random.Random(0)
    rows = [(ex.prompt, ex.answer) for ex in (task.sample(rng, 6) for _ in range(40))]
    train_file, test_file = jsonl(tmp_path / "train.jsonl", rows[:32]), jsonl(tmp_path / "test.jsonl", rows[32:])
    cfg = compose_config("train", SMALL_RUN + ["task=jsonl", f"task.train={train_file}", f"task.test={test_file}",
                                               "task.layout=per_position", "task.checker=sudoku", "model.causal=false"])
    record = train.run(cfg, run_dir=tmp_path / "run")
    assert record["answer_metrics"] == ["constraint_satisfied", "violations"] and record["n_examples"] == 8
    cfg = compose_config("train", SMALL_RUN + ["task=jsonl", f"task.train={train_file}", f"task.test={test_file}",
                                               "task.layout=per_position", "task.checker=maze"])
    with pytest.raises(ConfigError, match="example 1: maze: prompt .* must be rows each ending in '|'"):
        build_data(cfg, seed=0)


@pytest.mark.parametrize(
    "overrides",
    [["objective=ce_all_steps"], ["objective=huginn"], ["model.exit_gate=true", "objective=ouro_stage1"],
     ["model=ode", "solver=rk4", "solver.step_size=1", "solver.t_end=2", "objective=rnode"],
     ["model=ode", "solver=rk4", "solver.step_size=1", "solver.t_end=2", "objective=fm_reflow"],
     ["model=ode", "solver=dopri5", "solver.rtol=1e-2", "solver.atol=1e-2", "solver.t_end=2", "objective=steer"]],
)
def test_objectives_train_the_bidirectional_model_on_a_grid_task(overrides: list[str], tmp_path: Path) -> None:
    cfg = compose_config("train", SUDOKU + ["model.loops=2", "trainer.max_steps=4", "trainer.val_check_interval=2",
                                            *overrides])
    record = train.run(cfg, run_dir=tmp_path / "run")
    assert record["train_steps"] == 4 and "constraint_satisfied" in record


def test_tasks_without_answer_scores_decode_nothing_extra() -> None:
    """Suffix tasks that do not score answers get no scorer (no greedy decoding in their evaluation)."""
    from odelm.evaluation import answer_scorer
    from odelm.tasks import ModularChain, PrefixParity

    tok = CharTokenizer("0123456789+-*")
    assert answer_scorer(ModularChain(), tok, [], "suffix") is None and answer_scorer(None, tok, [], "suffix") is None
    assert isinstance(answer_scorer(PrefixParity(), tok, [], "per_position"), AnswerScorer)


def test_simulation_free_distillation_masks_the_batch_it_trains_on(tmp_path: Path) -> None:
    """fm_distill evaluates the student's field without a student forward: the student's attention must
    still mask the padding of *this* batch (mazes of mixed sizes pad differently from batch to batch)."""
    maze = SMALL_RUN + ["task=maze", "model.causal=false", "task.n_train=64", "task.n_test_per_difficulty=2",
                        "task.test_difficulties=[2,4]", "model.loops=2", "trainer.max_steps=4",
                        "trainer.val_check_interval=2"]
    teacher = train.run(compose_config("train", maze), run_dir=tmp_path / "teacher")
    cfg = compose_config("train", maze + ["model.row_end=|", "model=ode", "solver=euler", "solver.step_size=1", "solver.t_end=2",
                                          "objective=fm_distill", f"objective.teacher={teacher['checkpoint']}"])
    record = train.run(cfg, run_dir=tmp_path / "student")
    assert record["train_steps"] == 4
