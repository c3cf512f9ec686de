"""Scoring, outlier/duplicate checks, score EMA -> weights, and aggregation.

The core modules re-exported here (`checks`, `norms`, `scoring`, `aggregation`, `score_ema`)
are pure functions over decoded pseudo-gradients (name -> Tensor mappings, delta = base -
trained) and per-sequence loss vectors, and import torch and the standard library only. Two
modules build on them and also use `protocol` and the training core: `unit_merge` (joining
units of work through the shard geometry of `template.training.shards`) and `round` (from the
bytes miners sent to score reports and the merged update). No module here imports the chain,
bittensor or networking code.
"""

from template.validation.aggregation import (
    aggregate,
    clip_to_norms,
    median_norm_clip,
    median_tensor_norms,
)
from template.validation.checks import (
    DuplicateFinding,
    find_duplicates,
    is_empty,
    non_finite,
    norm_outlier,
    payload_problem,
    similarity_matrices,
    wrong_shape,
)
from template.validation.norms import delta_norm, sum_of_squares, tensor_norm
from template.validation.score_ema import ScoreBook, ScoreEntry
from template.validation.scoring import (
    CHECK_ORDER,
    AssignmentTest,
    CheckOutcome,
    Contribution,
    GainStats,
    ScoreReport,
    ScoringConfig,
    assigned_vs_random,
    paired_gain,
    score_round,
)

__all__ = [
    "CHECK_ORDER",
    "AssignmentTest",
    "CheckOutcome",
    "Contribution",
    "DuplicateFinding",
    "GainStats",
    "ScoreBook",
    "ScoreEntry",
    "ScoreReport",
    "ScoringConfig",
    "aggregate",
    "assigned_vs_random",
    "clip_to_norms",
    "delta_norm",
    "find_duplicates",
    "is_empty",
    "median_norm_clip",
    "median_tensor_norms",
    "non_finite",
    "norm_outlier",
    "paired_gain",
    "payload_problem",
    "score_round",
    "similarity_matrices",
    "sum_of_squares",
    "tensor_norm",
    "wrong_shape",
]
