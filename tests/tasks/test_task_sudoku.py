"""Sudoku: unique solutions (re-counted by a brute-force search written here), blanks = difficulty, a checker
and scores that accept any valid grid, validity-preserving augmentation, and clear errors."""
import random

import pytest

from odelm.tasks import Example, Sudoku, TaskError, build_task, generate
from odelm.tasks.sudoku import guesses_to_solve


def brute_force_solutions(prompt: str, br: int, bc: int, limit: int = 3) -> list[str]:
    """Every completion of `prompt` (up to `limit`): plain cell-by-cell backtracking, no bitmasks or
    cell ordering, checking each unit by set membership: independent of the generator's counter."""
    n = br * bc
    grid = [0 if ch == "." else int(ch) for ch in prompt]
    found: list[str] = []

    def ok(i: int, d: int) -> bool:
        r, c = divmod(i, n)
        if any(grid[r * n + k] == d for k in range(n)) or any(grid[k * n + c] == d for k in range(n)):
            return False
        r0, c0 = r - r % br, c - c % bc
        return all(grid[(r0 + a) * n + c0 + b] != d for a in range(br) for b in range(bc))

    def go(i: int) -> None:
        if len(found) >= limit:
            return
        if i == n * n:
            found.append("".join(map(str, grid)))
            return
        if grid[i]:
            go(i + 1)
            return
        for d in range(1, n + 1):
            if ok(i, d):
                grid[i] = d
                go(i + 1)
                grid[i] = 0

    go(0)
    return found


@pytest.mark.parametrize("br,bc,difficulties", [(2, 2, [1, 6, 12]), (2, 3, [5, 15, 24])])
def test_generated_puzzles_have_one_solution_the_answer(br, bc, difficulties):
    task = Sudoku(br, bc)
    for ex in generate(task, difficulties, 8, seed=3, per_difficulty=True):
        assert ex.prompt.count(".") == ex.difficulty
        assert brute_force_solutions(ex.prompt, br, bc) == [ex.answer]
        assert task.check(ex)
        assert task.score(ex, ex.answer) == {"constraint_satisfied": 1.0, "violations": 0.0}


def test_nine_by_nine_puzzle_is_unique():
    task = Sudoku(3, 3)
    ex = task.sample(random.Random(0), 40)
    assert len(ex.prompt) == 81 and ex.prompt.count(".") == 40
    assert brute_force_solutions(ex.prompt, 3, 3, limit=2) == [ex.answer]


# A published "hardest" 9×9 puzzle (A. Inkala, 2012): singles alone make no progress on it.
INKALA = "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."
# Solvable by naked and hidden singles alone (a newspaper-easy puzzle).
EASY = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."


def test_guesses_to_solve_rates_known_puzzles():
    assert guesses_to_solve([int(ch) if ch != "." else 0 for ch in EASY], 3, 3) == 0
    assert guesses_to_solve([int(ch) if ch != "." else 0 for ch in INKALA], 3, 3) >= 20
    solved = [int(ch) for ch in brute_force_solutions(EASY, 3, 3, limit=1)[0]]
    assert guesses_to_solve(solved, 3, 3) == 0
    one_blank = list(solved)
    one_blank[40] = 0  # a single blank is a naked single
    assert guesses_to_solve(one_blank, 3, 3) == 0
    with pytest.raises(TaskError, match=r"puzzle '11\.\.\..* has no solution"):
        guesses_to_solve([1, 1] + [0] * 79, 3, 3)
    with pytest.raises(TaskError, match=r"a grid is 81 integers in \[0, 9\]"):
        guesses_to_solve([0] * 80, 3, 3)
    with pytest.raises(TaskError, match=r"a grid is 81 integers in \[0, 9\]"):
        guesses_to_solve([-1] + [0] * 80, 3, 3)


def test_hard_generator_keeps_only_puzzles_that_need_guessing():
    easy, hard = Sudoku(3, 3), Sudoku(3, 3, min_guesses=2, max_tries=200)
    ratings = [guesses_to_solve(easy.parse(easy.sample(random.Random(s), 50).prompt), 3, 3) for s in range(12)]
    assert min(ratings) == 0  # without the filter, most 50-blank puzzles fall to singles
    for ex in generate(hard, [50, 54], 3, seed=5, per_difficulty=True):
        assert ex.prompt.count(".") == ex.difficulty
        assert guesses_to_solve(hard.parse(ex.prompt), 3, 3) >= 2
        assert brute_force_solutions(ex.prompt, 3, 3, limit=2) == [ex.answer]
    assert hard.describe()["min_guesses"] == 2
    with pytest.raises(TaskError, match="min_guesses must be an integer >= 0, got -1"):
        Sudoku(3, 3, min_guesses=-1)
    with pytest.raises(TaskError, match="needing at least 50 guesses in 2 grids.*raise the difficulty, lower min_guesses"):
        Sudoku(2, 2, min_guesses=50, max_tries=2).sample(random.Random(0), 10)


def test_deterministic_from_rng_and_registered():
    task = build_task("sudoku", box_rows=2, box_cols=3)
    assert task.layout == "per_position" and task.alphabet() == ".123456"
    a = generate(task, [10, 20], 20, seed=5)
    random.seed(1)
    assert generate(task, [10, 20], 20, seed=5) == a
    assert generate(task, [10, 20], 20, seed=6) != a


def test_checker_accepts_any_valid_completion_not_only_the_reference():
    task = Sudoku(2, 2)
    solution = "1234341221434321"
    prompt = "1..." + "." * 12  # one given: many completions
    others = brute_force_solutions(prompt, 2, 2, limit=50)
    assert len(others) > 1 and solution in others
    for grid in others:
        ex = Example(prompt, solution, 15)
        assert task.check(Example(prompt, grid, 15))
        assert task.score(ex, grid)["constraint_satisfied"] == 1.0


def test_checker_and_score_catch_each_kind_of_violation():
    task = Sudoku(2, 2)
    ex = Example("12..34..2143....", "1234341221434321", 6)
    assert task.check(ex)
    changed_given = "2134341221434321"  # swaps the givens 1, 2: keeps rows valid, breaks givens and columns
    assert not task.check(Example(ex.prompt, changed_given, 6))
    score = task.score(ex, changed_given)
    assert score["constraint_satisfied"] == 0.0 and score["violations"] >= 2
    one_duplicate = "1234341221434323"  # last cell 1 -> 3: a duplicate 3 in its row, column and box
    assert task.score(ex, one_duplicate) == {"constraint_satisfied": 0.0, "violations": 3.0}
    assert task.score(ex, "123434122143432?")["violations"] == 1.0  # a non-digit cell
    assert task.score(ex, "12343412")["violations"] == 8.0 + 4.0  # 8 cells missing, 4 of them givens
    assert task.score(ex, "1234341221434321" + "12")["violations"] == 2.0  # characters beyond the grid
    assert not task.check(Example(ex.prompt, "123434122143432.", 6))  # a blank left in the answer


@pytest.mark.parametrize("br,bc", [(2, 2), (2, 3), (3, 3)])
def test_augmentation_keeps_puzzles_valid_and_unique(br, bc):
    task = Sudoku(br, bc)
    ex = task.sample(random.Random(1), br * bc * 2)
    rng = random.Random(0)
    variants = [task.augment(ex, rng) for _ in range(20)]
    assert len({v.prompt for v in variants}) > 10  # it does change the grid
    for v in variants:
        assert task.check(v) and v.prompt.count(".") == ex.prompt.count(".") and v.difficulty == ex.difficulty
        if br * bc <= 6:
            assert brute_force_solutions(v.prompt, br, bc, limit=2) == [v.answer]
    again = [task.augment(ex, r) for r in [random.Random(0)] for _ in range(20)]
    assert again == variants  # seeded


def blank_counts(prompt: str, n: int) -> tuple[list[int], list[int]]:
    """Sorted blanks per row and per column: row and column permutations keep each multiset, relabelling
    does not touch blanks, transposition swaps the two."""
    rows = sorted(prompt[r * n:(r + 1) * n].count(".") for r in range(n))
    cols = sorted(sum(prompt[r * n + c] == "." for r in range(n)) for c in range(n))
    return rows, cols


@pytest.mark.parametrize("br,bc,transposes", [(2, 2, True), (3, 3, True), (2, 3, False)])
def test_transposition_only_for_square_boxes(br, bc, transposes):
    task = Sudoku(br, bc)
    n = br * bc
    rng = random.Random(0)
    ex = next(e for e in (task.sample(rng, n + 2) for _ in range(200))
              if blank_counts(e.prompt, n)[0] != blank_counts(e.prompt, n)[1])
    rows, cols = blank_counts(ex.prompt, n)
    seen = {"plain": 0, "transposed": 0}
    for _ in range(40):
        v_rows, v_cols = blank_counts(task.augment(ex, rng).prompt, n)
        seen["plain" if (v_rows, v_cols) == (rows, cols) else "transposed"] += (v_rows, v_cols) in ((rows, cols), (cols, rows))
    assert seen["plain"] > 0 and (seen["transposed"] > 0) == transposes
    assert seen["plain"] + seen["transposed"] == 40


def test_bad_settings_and_prompts_name_the_value():
    with pytest.raises(TaskError, match="box_rows must be an integer >= 1"):
        Sudoku(0, 2)
    with pytest.raises(TaskError, match="16 digits"):
        Sudoku(4, 4)
    with pytest.raises(TaskError, match=r"number of blanks\) must be an integer in \[1, 15\], got 16"):
        Sudoku(2, 2).sample(random.Random(0), 16)
    with pytest.raises(TaskError, match="no puzzle with 14 blanks"):
        Sudoku(2, 2, max_tries=3).sample(random.Random(0), 14)
    task = Sudoku(2, 2)
    with pytest.raises(TaskError, match="has 15 characters; a 4x4 grid has 16"):
        task.check(Example("1" * 15, "1" * 16, 1))
    with pytest.raises(TaskError, match=r"characters '7x' outside"):
        task.check(Example("7x" + "." * 14, "1" * 16, 1))
    with pytest.raises(TaskError, match="has no solution"):
        task.validate_example(Example("11" + "." * 14, "1234341221434321", 14))
    with pytest.raises(TaskError, match="does not solve puzzle"):
        task.validate_example(Example("1" + "." * 15, "2134341221434321", 15))
