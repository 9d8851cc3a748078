"""Sudoku with r×c boxes (4×4 with 2×2 boxes, 6×6 with 2×3, 9×9 with 3×3); difficulty = number of blanks.

A grid of N = r·c rows and columns is written row by row as N² characters: the digits 1..N, and "."
for a blank in the prompt. The answer is the solved grid (per-position layout: answer[i] is the
digit of cell i). Every generated puzzle has exactly one solution (blanks are removed one at a time
from a random full grid while a solution counter still finds one solution). `check` and `score`
accept ANY grid that keeps the givens and breaks no row, column or box constraint; they never
consult the generator's grid.
"""
from __future__ import annotations

import random
from typing import ClassVar

from .base import Example, Task, TaskError, is_int, short_repr, sorted_unique

BLANK = "."


def count_solutions(grid: list[int], box_rows: int, box_cols: int, limit: int = 2) -> int:
    """Number of completions of `grid` (N² ints, 0 = blank), counted up to `limit`: depth-first search
    over bitmasks of the digits each row, column and box still allows, most constrained cell first."""
    n = box_rows * box_cols
    full = (1 << n) - 1
    rows, cols, boxes = [0] * n, [0] * n, [0] * n
    blanks = []
    for i, v in enumerate(grid):
        r, c = divmod(i, n)
        b = (r // box_rows) * box_rows + c // box_cols
        if v:
            bit = 1 << (v - 1)
            if rows[r] & bit or cols[c] & bit or boxes[b] & bit:
                return 0  # the givens already clash
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
        else:
            blanks.append((r, c, b))

    def search(remaining: list[tuple[int, int, int]]) -> int:
        if not remaining:
            return 1
        best, best_free, best_count = 0, 0, n + 1
        for j, (r, c, b) in enumerate(remaining):
            free = full & ~(rows[r] | cols[c] | boxes[b])
            count = bin(free).count("1")
            if count < best_count:
                best, best_free, best_count = j, free, count
                if count <= 1:
                    break
        if best_count == 0:
            return 0
        r, c, b = remaining[best]
        rest = remaining[:best] + remaining[best + 1:]
        found = 0
        while best_free:
            bit = best_free & -best_free
            best_free ^= bit
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            found += search(rest)
            rows[r] ^= bit
            cols[c] ^= bit
            boxes[b] ^= bit
            if found >= limit:
                break
        return found

    return search(blanks)


def _units(box_rows: int, box_cols: int) -> list[list[int]]:
    """The cell indices of every row, column and box of an N×N grid (N = box_rows·box_cols)."""
    n = box_rows * box_cols
    rows = [[r * n + c for c in range(n)] for r in range(n)]
    cols = [[r * n + c for r in range(n)] for c in range(n)]
    boxes = [[(r0 + a) * n + c0 + b for a in range(box_rows) for b in range(box_cols)]
             for r0 in range(0, n, box_rows) for c0 in range(0, n, box_cols)]
    return rows + cols + boxes


def guesses_to_solve(grid: list[int], box_rows: int, box_cols: int) -> int:
    """How hard a puzzle is for a human-style solver: the number of guesses (values tried at a branch)
    a solver needs to reach a solution when, before every guess, it fills naked singles (a cell with
    one candidate) and hidden singles (a digit with one place in a row, column or box) until none is
    left. 0: singles alone solve it. Branches on the cell with fewest candidates, smallest digit first
    (deterministic). The count belongs to this solver: a symmetric copy of the puzzle (relabelled,
    permuted, transposed) can rate differently when it breaks ties otherwise, though 0 stays 0 (what
    singles solve does not depend on symmetry). TaskError if the grid is malformed or has no solution."""
    n = box_rows * box_cols
    if len(grid) != n * n or any(not is_int(v) or not 0 <= v <= n for v in grid):
        raise TaskError(f"sudoku {n}x{n}: a grid is {n * n} integers in [0, {n}] (0 = blank), got "
                        f"{short_repr(grid, 60)}")
    full = (1 << n) - 1
    units = _units(box_rows, box_cols)
    peers = [set() for _ in range(n * n)]
    for unit in units:
        for i in unit:
            peers[i].update(unit)
    for i, p in enumerate(peers):
        p.discard(i)
    guesses = 0

    def propagate(g: list[int]) -> list[int] | None:
        """Fill singles in place until none is left; the candidate masks, or None on a contradiction."""
        while True:
            for unit in units:
                placed = [g[i] for i in unit if g[i]]
                if len(placed) != len(set(placed)):
                    return None
            cand = [0] * (n * n)
            for i in range(n * n):
                if not g[i]:
                    mask = full
                    for p in peers[i]:
                        if g[p]:
                            mask &= ~(1 << (g[p] - 1))
                    if not mask:
                        return None
                    cand[i] = mask
            naked = [i for i in range(n * n) if not g[i] and (cand[i] & (cand[i] - 1)) == 0]
            for i in naked:
                g[i] = cand[i].bit_length()
            if naked:
                continue
            changed = False
            for unit in units:
                for d in range(1, n + 1):
                    if any(g[i] == d for i in unit):
                        continue
                    places = [i for i in unit if not g[i] and cand[i] >> (d - 1) & 1]
                    if not places:
                        return None
                    if len(places) == 1:
                        g[places[0]] = d
                        changed = True
            if not changed:
                return cand

    def solve(g: list[int]) -> bool:
        nonlocal guesses
        cand = propagate(g)
        if cand is None:
            return False
        blanks = [i for i in range(n * n) if not g[i]]
        if not blanks:
            return True
        cell = min(blanks, key=lambda i: bin(cand[i]).count("1"))
        for d in range(1, n + 1):
            if cand[cell] >> (d - 1) & 1:
                guesses += 1
                trial = list(g)
                trial[cell] = d
                if solve(trial):
                    return True
        return False

    if not solve(list(grid)):
        text = "".join(str(v) if v else BLANK for v in grid)
        raise TaskError(f"sudoku {n}x{n}: puzzle {short_repr(text, 40)} has no solution; it cannot be rated")
    return guesses


class Sudoku(Task):
    """Sudoku with boxes of `box_rows` × `box_cols` cells (N = box_rows·box_cols <= 9 digits).

    Args:
        box_rows, box_cols: box shape; 2×2 → 4×4 grids, 2×3 → 6×6, 3×3 → 9×9.
        max_tries: full grids tried per puzzle before giving up on a number of blanks no unique puzzle
            reached (a 4×4 puzzle with a unique solution has at most 12 blanks).
        min_guesses: the hard-puzzle generator: keep only puzzles that `guesses_to_solve` rates at
            least this (0: every unique puzzle; 1: none that naked and hidden singles alone solve).
            9×9 at 56 blanks: 0.41 of unique puzzles need a guess, 0.31 two or more
            (experiments/sudoku_hardness.py).
    """

    name: ClassVar[str] = "sudoku"
    layout: ClassVar[str] = "per_position"
    augments: ClassVar[bool] = True

    def __init__(self, box_rows: int = 2, box_cols: int = 2, max_tries: int = 50, min_guesses: int = 0) -> None:
        for key, value in (("box_rows", box_rows), ("box_cols", box_cols)):
            if not is_int(value) or value < 1:
                raise TaskError(f"{self.name}: {key} must be an integer >= 1, got {short_repr(value)}")
        if not 2 <= box_rows * box_cols <= 9:
            raise TaskError(
                f"{self.name}: box_rows × box_cols = {box_rows * box_cols} digits; single-character cells need 2..9"
            )
        if not is_int(max_tries) or max_tries < 1:
            raise TaskError(f"{self.name}: max_tries must be an integer >= 1, got {short_repr(max_tries)}")
        if not is_int(min_guesses) or min_guesses < 0:
            raise TaskError(f"{self.name}: min_guesses must be an integer >= 0, got {short_repr(min_guesses)}")
        self.box_rows, self.box_cols, self.max_tries, self.min_guesses = box_rows, box_cols, max_tries, min_guesses

    @property
    def size(self) -> int:
        return self.box_rows * self.box_cols

    @property
    def digits(self) -> str:
        return "".join(str(d) for d in range(1, self.size + 1))

    def alphabet(self) -> str:
        return sorted_unique(self.digits + BLANK)

    def validate_difficulty(self, difficulty) -> None:
        cells = self.size * self.size
        if not is_int(difficulty) or not 1 <= difficulty < cells:
            raise TaskError(
                f"{self.name} {self.size}x{self.size}: difficulty (number of blanks) must be an integer in "
                f"[1, {cells - 1}], got {short_repr(difficulty)}"
            )

    # --- generation ----------------------------------------------------------------------
    def _full_grid(self, rng: random.Random) -> list[int]:
        """A random solved grid: backtracking fill, cells in order, digits in random order."""
        n, br, bc = self.size, self.box_rows, self.box_cols
        grid = [0] * (n * n)

        def fill(i: int) -> bool:
            if i == n * n:
                return True
            r, c = divmod(i, n)
            used = {grid[r * n + k] for k in range(n)} | {grid[k * n + c] for k in range(n)}
            r0, c0 = r - r % br, c - c % bc
            used |= {grid[(r0 + a) * n + c0 + b] for a in range(br) for b in range(bc)}
            for d in rng.sample(range(1, n + 1), n):
                if d not in used:
                    grid[i] = d
                    if fill(i + 1):
                        return True
            grid[i] = 0
            return False

        fill(0)
        return grid

    def sample(self, rng: random.Random, difficulty: int) -> Example:
        """Blank cells of a random full grid in random order, keeping a blank only while the puzzle stays
        uniquely solvable, until `difficulty` cells are blank (a fresh grid when a grid runs out). With
        `min_guesses` > 0, a puzzle that `guesses_to_solve` rates lower is dropped for a fresh grid."""
        self.validate_difficulty(difficulty)
        for _ in range(self.max_tries):
            solution = self._full_grid(rng)
            puzzle = list(solution)
            blanks = 0
            for i in rng.sample(range(len(puzzle)), len(puzzle)):
                puzzle[i] = 0
                if count_solutions(puzzle, self.box_rows, self.box_cols) == 1:
                    blanks += 1
                    if blanks == difficulty:
                        break
                else:
                    puzzle[i] = solution[i]
            if blanks == difficulty and (
                    not self.min_guesses
                    or guesses_to_solve(puzzle, self.box_rows, self.box_cols) >= self.min_guesses):
                return Example(self._text(puzzle), self._text(solution), difficulty)
        if self.min_guesses:
            raise TaskError(
                f"{self.name} {self.size}x{self.size}: no puzzle with {difficulty} blanks, a unique solution and "
                f"needing at least {self.min_guesses} guesses in {self.max_tries} grids; hard puzzles are likelier "
                "with more blanks (9x9, two or more guesses: 0.18 of unique puzzles at 52 blanks, 0.31 at 56), so raise the "
                "difficulty, lower min_guesses or raise max_tries"
            )
        raise TaskError(
            f"{self.name} {self.size}x{self.size}: no puzzle with {difficulty} blanks and a unique solution in "
            f"{self.max_tries} grids; lower the difficulty (number of blanks)"
        )

    @staticmethod
    def _text(grid: list[int]) -> str:
        return "".join(str(v) if v else BLANK for v in grid)

    # --- checking ------------------------------------------------------------------------
    def parse(self, text: str, what: str = "prompt", blanks: bool = True) -> list[int]:
        """N² characters → ints (0 for a blank); TaskError naming the problem (wrong size or characters)."""
        n = self.size
        if not isinstance(text, str) or len(text) != n * n:
            got = f"{len(text)} characters" if isinstance(text, str) else type(text).__name__
            raise TaskError(
                f"{self.name} {n}x{n}: {what} {short_repr(text, 40)} has {got}; a {n}x{n} grid has {n * n}"
            )
        allowed = self.digits + (BLANK if blanks else "")
        bad = sorted(set(text) - set(allowed))
        if bad:
            raise TaskError(
                f"{self.name} {n}x{n}: {what} {short_repr(text, 40)} has characters {''.join(bad)!r} outside "
                f"{allowed!r}"
            )
        return [0 if ch == BLANK else int(ch) for ch in text]

    def units(self) -> list[list[int]]:
        """The cell indices of every row, column and box."""
        return _units(self.box_rows, self.box_cols)

    def score(self, example: Example, predicted: str) -> dict[str, float]:
        """violations = cells that are not a digit + givens changed + Σ over rows, columns and boxes of the
        surplus copies of each digit; constraint_satisfied = no violation (any valid completion counts)."""
        givens = self.parse(example.prompt)
        n = self.size
        cells = list(predicted[: n * n].ljust(n * n, "?"))
        violations = sum(1 for ch in cells if ch not in self.digits)
        violations += sum(1 for g, ch in zip(givens, cells) if g and ch != str(g))
        for unit in self.units():
            seen: dict[str, int] = {}
            for i in unit:
                if cells[i] in self.digits:
                    seen[cells[i]] = seen.get(cells[i], 0) + 1
            violations += sum(count - 1 for count in seen.values())
        violations += max(0, len(predicted) - n * n)  # characters beyond the grid (missing cells count above)
        return {"constraint_satisfied": float(violations == 0), "violations": float(violations)}

    def check(self, example: Example) -> bool:
        """The answer is a full grid whose rows, columns and boxes each hold every digit once, and which keeps
        every given of the prompt (TaskError if the prompt itself is malformed)."""
        givens = self.parse(example.prompt)
        try:
            grid = self.parse(example.answer, "answer", blanks=False)
        except TaskError:
            return False
        if any(g and g != v for g, v in zip(givens, grid)):
            return False
        want = set(range(1, self.size + 1))
        return all({grid[i] for i in unit} == want for unit in self.units())

    def validate_example(self, example: Example) -> None:
        """User data: TaskError unless the prompt is a well-formed, solvable puzzle and the answer solves it."""
        givens = self.parse(example.prompt)
        self.parse(example.answer, "answer", blanks=False)
        if not self.check(example):
            if count_solutions(givens, self.box_rows, self.box_cols, limit=1) == 0:
                raise TaskError(f"{self.name}: puzzle {short_repr(example.prompt, 40)} has no solution")
            raise TaskError(
                f"{self.name}: answer {short_repr(example.answer, 40)} does not solve puzzle "
                f"{short_repr(example.prompt, 40)} (it breaks a row, column or box, or changes a given)"
            )

    # --- augmentation --------------------------------------------------------------------
    def augment(self, example: Example, rng: random.Random) -> Example:
        """The same random symmetry applied to prompt and answer: digit relabelling, band and stack
        permutations, row-within-band and column-within-stack permutations, and (square boxes) transposition.
        Each maps valid grids to valid grids and keeps the number of blanks and of solutions."""
        n, br, bc = self.size, self.box_rows, self.box_cols
        relabel = dict(zip(self.digits, rng.sample(self.digits, n)))
        relabel[BLANK] = BLANK
        bands = rng.sample(range(n // br), n // br)
        stacks = rng.sample(range(n // bc), n // bc)
        row_order = [band * br + r for band in bands for r in rng.sample(range(br), br)]
        col_order = [stack * bc + c for stack in stacks for c in rng.sample(range(bc), bc)]
        transpose = br == bc and rng.random() < 0.5

        def apply(text: str) -> str:
            out = []
            for r in range(n):
                for c in range(n):
                    rr, cc = row_order[r], col_order[c]
                    if transpose:
                        rr, cc = cc, rr
                    out.append(relabel[text[rr * n + cc]])
            return "".join(out)

        return Example(apply(example.prompt), apply(example.answer), example.difficulty)
