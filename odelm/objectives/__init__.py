"""Training objectives: named terms combined with weights (`TERMS` maps config names to classes)."""
from .base import Objective, ObjectiveOutput, Term, answer_cross_entropy
from .ce import CrossEntropy

TERMS: dict[str, type[Term]] = {"ce": CrossEntropy}

__all__ = ["TERMS", "CrossEntropy", "Objective", "ObjectiveOutput", "Term", "answer_cross_entropy"]
