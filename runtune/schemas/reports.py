"""The evaluation reports `runtune.metrics` measures, as `Evaluation.metrics` shows them per model.

Open (`extra="allow"`): a key a newer metric adds passes through rather than being dropped."""

from __future__ import annotations

from pydantic import ConfigDict

from runtune.schemas.common import ApiModel


class ClassScores(ApiModel):
    """One label's scores; `support` (its examples) and `unmapped` (those answered with no label) are
    counts, kept as floats beside the ratios."""

    precision: float
    recall: float
    f1: float
    support: float
    unmapped: float


class ConfusionRow(ApiModel):
    """A true label's row: how many of its examples were answered as each label (in the matrix's
    `labels` order), and with no label."""

    label: str
    predicted: list[int]
    unmapped: int


class ConfusionMatrix(ApiModel):
    labels: list[str]
    rows: list[ConfusionRow]


class ClassificationReport(ApiModel):
    """`runtune.metrics.classification.classification_report`: accuracy, the macro and weighted
    means, per-label scores and the confusion matrix."""

    model_config = ConfigDict(extra="allow")

    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_f1: float
    per_class: dict[str, ClassScores]
    confusion_matrix: ConfusionMatrix
    unmapped_rate: float
    samples: int


class TextReport(ApiModel):
    """`runtune.metrics.text.generation_report`: the means of exact match, token F1 and ROUGE-L."""

    model_config = ConfigDict(extra="allow")

    exact_match: float
    token_f1: float
    rouge_l: float
    samples: int


# One model's report in an evaluation: label scoring or free generation on a classification set
# (both measure labels), text metrics on a generation set.
ModelReport = ClassificationReport | TextReport
