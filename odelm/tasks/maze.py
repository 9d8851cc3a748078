"""Mazes: mark the cells of a shortest path from S to G; difficulty = rooms per side.

A maze with k×k rooms is a (2k+1)×(2k+1) grid of walls "#" and open cells ".", one open cell "S"
(start) and one "G" (goal), written row by row with "|" after every row (so a row's width is visible
in the text). The answer (per-position layout) copies the grid with every cell of a shortest S–G path,
S and G included, written "*". A random depth-first maze is a tree; `extra_openings` knocks out that
share of the remaining inner walls between rooms, so a maze can have several shortest paths: `check`
and `score` accept any of them (they re-derive the shortest distance by breadth-first search). Which one
the reference marks is `tie_break`'s choice: "random" (the default) picks among the closer neighbours at
random, so a maze whose paths tie (12% of 9×9 and 20% of 15×15 mazes at the default extra_openings,
experiments/results/maze_errors/) can be labelled either way;
"ordered" walks from S and takes the first of up, down, left, right, so the reference is a function of
the maze and training targets never contradict each other. (Measured on a GPU at equal steps, two
seeds against one, ordered references did not extrapolate further; inconclusive: experiments/README.md,
"Mazes and parity on a GPU".) Both draw the same random numbers, so a seed gives the same mazes under
either rule and only the references of tied mazes differ.

Test sizes above the trained ones need a size-agnostic model: learned absolute position embeddings
tie a position to one grid width; rotary (relative) positions, the default, do not, though a vertical
neighbour is still (2k+2) positions away, a distance that changes with the size; `model.row_end="|"`
makes the rotary positions 2-D (row, column), the same at every size.
"""
from __future__ import annotations

import random
from collections import deque
from typing import ClassVar, Iterable

from .base import Example, Task, TaskError, is_int, short_repr

WALL, OPEN, START, GOAL, PATH, ROW_END = "#", ".", "S", "G", "*", "|"


def _neighbours(i: int, n: int):
    r, c = divmod(i, n)
    if r > 0:
        yield i - n
    if r < n - 1:
        yield i + n
    if c > 0:
        yield i - 1
    if c < n - 1:
        yield i + 1


def _distances(open_cells: set[int], source: int | Iterable[int], n: int) -> dict[int, int]:
    """Breadth-first distances from `source` (a cell, or several cells all at distance 0) within
    `open_cells` of an n×n grid."""
    sources = [source] if isinstance(source, int) else list(source)
    dist = dict.fromkeys(sources, 0)
    queue = deque(sources)
    while queue:
        i = queue.popleft()
        for j in _neighbours(i, n):
            if j in open_cells and j not in dist:
                dist[j] = dist[i] + 1
                queue.append(j)
    return dist


class Maze(Task):
    """Args:
        extra_openings: share in [0, 1] of the inner walls between rooms that a spanning-tree maze keeps
            which are removed again (0: a perfect maze, one path; above 0: loops, several shortest paths).
        tie_break: which shortest path the reference marks where several exist: "random", or "ordered"
            (first of up, down, left, right at every branching, a function of the maze).
        far_goal: share in [0, 1] of mazes whose goal is a room farthest from the (random) start, so that
            their path is the longest from that start (far_goal=0.5 raises the mean S–G distance of 7×7 and
            9×9 perfect mazes from 8.25 to 11.75 steps: `trained_mean_distance` in experiments/results/maze_errors/);
            the rest place both ends at random. A training-distribution knob (`task.train_params`):
            0, the default, draws exactly the mazes it drew before the knob existed.
    """

    name: ClassVar[str] = "maze"
    layout: ClassVar[str] = "per_position"

    TIE_BREAKS: ClassVar[tuple[str, ...]] = ("ordered", "random")

    def __init__(self, extra_openings: float = 0.1, tie_break: str = "random", far_goal: float = 0.0) -> None:
        if isinstance(extra_openings, bool) or not isinstance(extra_openings, (int, float)) \
                or not 0 <= extra_openings <= 1:
            raise TaskError(f"{self.name}: extra_openings must be a number in [0, 1], got {short_repr(extra_openings)}")
        if tie_break not in self.TIE_BREAKS:
            raise TaskError(f"{self.name}: tie_break must be one of {self.TIE_BREAKS}, got {short_repr(tie_break)}")
        if isinstance(far_goal, bool) or not isinstance(far_goal, (int, float)) or not 0 <= far_goal <= 1:
            raise TaskError(f"{self.name}: far_goal must be a number in [0, 1], got {short_repr(far_goal)}")
        self.extra_openings = float(extra_openings)
        self.tie_break = tie_break
        self.far_goal = float(far_goal)

    def alphabet(self) -> str:
        return "".join(sorted(WALL + OPEN + START + GOAL + PATH + ROW_END))

    def validate_difficulty(self, difficulty) -> None:
        if not is_int(difficulty) or difficulty < 2:
            raise TaskError(f"{self.name}: difficulty (rooms per side) must be an integer >= 2, got {short_repr(difficulty)}")

    # --- generation ----------------------------------------------------------------------
    def sample(self, rng: random.Random, difficulty: int) -> Example:
        """Randomised depth-first carving over k×k rooms, extra openings, random S ≠ G among the rooms (or,
        a `far_goal` share of the time, G a room farthest from a random S), and a
        breadth-first shortest path as the reference answer (ties broken by `tie_break`)."""
        self.validate_difficulty(difficulty)
        k = difficulty
        n = 2 * k + 1
        grid = [WALL] * (n * n)
        room = lambda a, b: (2 * a + 1) * n + 2 * b + 1  # noqa: E731
        seen = {(0, 0)}
        stack = [(0, 0)]
        grid[room(0, 0)] = OPEN
        while stack:
            a, b = stack[-1]
            options = [(a + da, b + db) for da, db in ((1, 0), (-1, 0), (0, 1), (0, -1))
                       if 0 <= a + da < k and 0 <= b + db < k and (a + da, b + db) not in seen]
            if not options:
                stack.pop()
                continue
            na, nb = rng.choice(options)
            grid[(room(a, b) + room(na, nb)) // 2] = OPEN
            grid[room(na, nb)] = OPEN
            seen.add((na, nb))
            stack.append((na, nb))
        inner = [i for i in range(n * n) if grid[i] == WALL and 0 < i // n < n - 1 and 0 < i % n < n - 1
                 and ((i // n) % 2) != ((i % n) % 2)]  # walls between two horizontally or vertically adjacent rooms
        for i in inner:
            if rng.random() < self.extra_openings:
                grid[i] = OPEN
        rooms = [room(a, b) for a in range(k) for b in range(k)]
        if self.far_goal and rng.random() < self.far_goal:  # far_goal=0 draws nothing here: the old stream
            start = rng.choice(rooms)
            dist = _distances({i for i, ch in enumerate(grid) if ch != WALL}, start, n)
            farthest = max(dist[r] for r in rooms)
            goal = rng.choice([r for r in rooms if dist[r] == farthest])
        else:
            start, goal = rng.sample(rooms, 2)
        grid[start], grid[goal] = START, GOAL
        path = self._shortest_path(grid, n, start, goal, rng, ordered=self.tie_break == "ordered")
        answer = [PATH if i in path else ch for i, ch in enumerate(grid)]
        return Example(self._text(grid, n), self._text(answer, n), difficulty)

    @staticmethod
    def _shortest_path(grid: list[str], n: int, start: int, goal: int, rng: random.Random, ordered: bool) -> set[int]:
        """The cells of one shortest S–G path, walked from S; at a branching a random closer neighbour, or,
        when `ordered`, the first one in `_neighbours`' order (up, down, left, right). The random walk is
        drawn either way (`rng.choice` takes more or fewer random bits depending on how many neighbours it
        chooses among, so only the same walk keeps the stream, and every later maze, independent of
        `ordered`); the ordered path is a second walk that draws nothing."""
        open_cells = {i for i, ch in enumerate(grid) if ch != WALL}
        to_goal = _distances(open_cells, goal, n)

        def walk(pick) -> set[int]:
            path, i = {start}, start
            while i != goal:
                i = pick([j for j in _neighbours(i, n) if to_goal.get(j) == to_goal[i] - 1])
                path.add(i)
            return path

        drawn = walk(rng.choice)
        return walk(lambda closer: closer[0]) if ordered else drawn

    @staticmethod
    def _text(cells: list[str], n: int) -> str:
        return "".join("".join(cells[r * n:(r + 1) * n]) + ROW_END for r in range(n))

    # --- checking ------------------------------------------------------------------------
    def parse(self, prompt: str) -> tuple[int, list[str]]:
        """(side n, the n² cells) of a prompt; TaskError naming the problem (shape, characters, S and G)."""
        if not isinstance(prompt, str) or not prompt.endswith(ROW_END):
            raise TaskError(f"{self.name}: prompt {short_repr(prompt, 40)} must be rows each ending in {ROW_END!r}")
        rows = prompt[:-1].split(ROW_END)
        n = len(rows)
        if n < 3 or any(len(row) != n for row in rows):
            raise TaskError(
                f"{self.name}: prompt {short_repr(prompt, 40)} is not a square grid of at least 3×3 "
                f"(row lengths {[len(r) for r in rows][:8]}, {n} rows)"
            )
        cells = list("".join(rows))
        bad = sorted(set(cells) - set(WALL + OPEN + START + GOAL))
        if bad:
            raise TaskError(f"{self.name}: prompt {short_repr(prompt, 40)} has characters {''.join(bad)!r} outside "
                            f"{WALL + OPEN + START + GOAL!r}")
        if cells.count(START) != 1 or cells.count(GOAL) != 1:
            raise TaskError(f"{self.name}: prompt {short_repr(prompt, 40)} needs exactly one {START!r} and one {GOAL!r}")
        return n, cells

    def shortest_distance(self, prompt: str) -> int | None:
        """Breadth-first S–G distance in steps (None when G cannot be reached)."""
        n, cells = self.parse(prompt)
        open_cells = {i for i, ch in enumerate(cells) if ch != WALL}
        return _distances(open_cells, cells.index(START), n).get(cells.index(GOAL))

    def score(self, example: Example, predicted: str) -> dict[str, float]:
        """violations: characters that break the layout (a wall, row end, S or G not kept as the rule says, a
        non-path character on an open cell), marked cells whose number of marked neighbours is wrong for a simple
        S–G path (S and G: 1, others: 2), and 1 if the marked cells are not connected.
        constraint_satisfied: no violation (the marks are a valid S–G path); valid_shortest_path: also as short
        as breadth-first search finds (any shortest path counts, not only the reference)."""
        n, cells = self.parse(example.prompt)
        width = n + 1
        text = predicted[: len(example.prompt)].ljust(len(example.prompt), "?")
        out = [text[r * width + c] for r in range(n) for c in range(n)]
        violations = sum(1 for r in range(n) if text[r * width + n] != ROW_END)
        marked = set()
        for i, (given, got) in enumerate(zip(cells, out)):
            if given == WALL:
                violations += got != WALL
            elif given in (START, GOAL):
                violations += got != PATH
                marked.add(i)
            elif got == PATH:
                marked.add(i)
            else:
                violations += got != OPEN
        start, goal = cells.index(START), cells.index(GOAL)
        for i in marked:
            degree = sum(1 for j in _neighbours(i, n) if j in marked)
            violations += degree != (1 if i in (start, goal) else 2)
        connected = len(_distances(marked, start, n)) == len(marked)
        violations += not connected
        distance = self.shortest_distance(example.prompt)
        valid = violations == 0
        shortest = valid and distance is not None and len(marked) == distance + 1
        return {"constraint_satisfied": float(valid), "violations": float(violations),
                "valid_shortest_path": float(shortest)}

    def check(self, example: Example) -> bool:
        """The answer marks a shortest S–G path (any one) and keeps every other character of the grid."""
        if not isinstance(example.answer, str) or len(example.answer) != len(example.prompt):
            self.parse(example.prompt)
            return False
        return self.score(example, example.answer)["valid_shortest_path"] == 1.0

    def validate_example(self, example: Example) -> None:
        """User data: TaskError unless the prompt is a well-formed, solvable maze and the answer marks a shortest path."""
        if self.shortest_distance(example.prompt) is None:
            raise TaskError(f"{self.name}: maze {short_repr(example.prompt, 40)} has no path from S to G")
        if not self.check(example):
            raise TaskError(f"{self.name}: answer {short_repr(example.answer, 40)} does not mark a shortest S–G path "
                            f"of maze {short_repr(example.prompt, 40)}")
