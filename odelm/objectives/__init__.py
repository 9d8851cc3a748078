"""Training objectives: named terms combined with weights (`TERMS` maps config names to classes)."""
from .base import Objective, ObjectiveOutput, Term, answer_cross_entropy, flow_matching_loss
from .ce import CrossEntropy
from .ce_all_steps import CrossEntropyAllSteps
from .fm_distill import TrajectoryDistillation
from .fm_endpoint import EndpointFlowMatching
from .fm_reflow import Reflow
from .ouro_stage1 import OuroStage1, exit_distribution, stage1_loss
from .ouro_stage2 import OuroStage2, improvement_labels, stage2_loss
from .fixed_point import FixedPointResidual, relative_residual
from .horizon_ce import HorizonCrossEntropy
from .path_independence import PathIndependence
from .progressive import ProgressiveLoss
from .rnode import JacobianFrobenius, KineticEnergy
from .shortcut import ShortcutConsistency

TERMS: dict[str, type[Term]] = {
    cls.name: cls
    for cls in (
        CrossEntropy, CrossEntropyAllSteps, Reflow, TrajectoryDistillation, EndpointFlowMatching, KineticEnergy,
        JacobianFrobenius, OuroStage1, OuroStage2, HorizonCrossEntropy, ProgressiveLoss, FixedPointResidual,
        ShortcutConsistency, PathIndependence,
    )
}

__all__ = [
    "TERMS", "CrossEntropy", "CrossEntropyAllSteps", "EndpointFlowMatching", "FixedPointResidual",
    "HorizonCrossEntropy", "PathIndependence", "ProgressiveLoss", "ShortcutConsistency", "relative_residual", "JacobianFrobenius", "KineticEnergy",
    "Objective", "ObjectiveOutput", "OuroStage1", "OuroStage2", "Reflow", "Term", "TrajectoryDistillation",
    "answer_cross_entropy", "exit_distribution", "flow_matching_loss", "improvement_labels", "stage1_loss",
    "stage2_loss",
]
