"""What each ``evaluate.py`` command may be asked, as typed options built by the entry point.

The flag object stays in ``evaluate.py``; the commands receive these dataclasses, so they are
called from Python (tests, scripts) with plain arguments, and each option is checked once.
"""

from __future__ import annotations

import dataclasses

from jee.infer.benchmark import DEFAULT_MODES, MODES
from jee.infer.ladder import LADDER_KINDS, make_ladder
from jee.policy.crossfit import DEFAULT_FOLDS
from jee.policy.sweeps import FEATURE_CHOICES

# Mean relative cost budgets of the reports' budgets.json (exits and cascades alike).
BUDGETS = (0.3, 0.5, 0.7)
SPLITS = ("val", "test")
POLICIES = ("eenet", "bolukbasi")
STREAM_PLANS = ("auto", "none")


@dataclasses.dataclass(frozen=True)
class DescribeOptions:
    workdir: str | None = None   # also write WORKDIR/eval/describe.json


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    workdir: str | None = None   # a cascade's default: cascade.root
    split: str = "test"          # the split the report's rows are scored on
    step: str = "best"           # checkpoint: best | latest | a step number
    # Settings are selected on out-of-fold validation figures of this many folds (0 or 1:
    # fitted, selected and reported on all of validation, the old in-sample rule).
    crossfit_folds: int = DEFAULT_FOLDS
    # The learned exit policy's feature set: auto (best out of fold) | basic | history.
    features: str = "auto"

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"--split must be val or test, got {self.split!r}")
        if self.crossfit_folds < 0:
            raise ValueError(f"--crossfit_folds must be >= 0, got {self.crossfit_folds}")
        if self.features not in FEATURE_CHOICES:
            raise ValueError(f"--policy_features must be one of {list(FEATURE_CHOICES)}, got "
                             f"{self.features!r}")


@dataclasses.dataclass(frozen=True)
class BenchmarkOptions:
    workdir: str | None = None
    batch_size: int = 256
    repeats: int = 10
    modes: tuple[str, ...] = DEFAULT_MODES
    ladder: str = "geometric"
    ladder_growth: float = 1.25
    random_init: bool = False    # random weights and a synthetic policy, no checkpoint
    target_cost: float = 0.5     # synthetic policy's mean cost; Bolukbasi policy's budget
    policy: str = "eenet"        # eenet | bolukbasi (with a checkpoint)
    eager_examples: int = 32
    step: str = "best"
    allow_padding: bool = False  # a batch larger than the test split, padded
    # The dataset section (with "stream" in modes): request sizes, "B" for batch_size, and
    # the synthetic batches of a --random_init run.
    arrival_sizes: tuple[int | str, ...] = ("B", 8)
    dataset_batches: int = 40
    # The stream's spans: "auto" planned from validation's exit fractions, "none" a queue per
    # segment.
    stream_plan: str = "auto"
    # A cascade's operating points are selected as its report selects them.
    crossfit_folds: int = DEFAULT_FOLDS

    def __post_init__(self):
        object.__setattr__(self, "modes", tuple(self.modes))
        object.__setattr__(self, "arrival_sizes", tuple(
            _arrival_size(a) for a in self.arrival_sizes))
        if not self.arrival_sizes:
            raise ValueError("--arrival_sizes needs at least one size")
        if self.dataset_batches < 1:
            raise ValueError(f"--dataset_batches must be >= 1, got {self.dataset_batches}")
        unknown = set(self.modes) - set(MODES)
        if unknown:
            raise ValueError(f"unknown --modes {sorted(unknown)}; choose from {list(MODES)}")
        if self.stream_plan not in STREAM_PLANS:
            raise ValueError(f"--stream_plan must be one of {STREAM_PLANS}, got "
                             f"{self.stream_plan!r}")
        if self.ladder not in LADDER_KINDS:
            raise ValueError(f"--ladder must be one of {LADDER_KINDS}, got {self.ladder!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"--policy must be eenet or bolukbasi, got {self.policy!r}")
        if self.batch_size < 1 or self.repeats < 1:
            raise ValueError(f"--batch_size and --repeats must be >= 1, got {self.batch_size} "
                             f"and {self.repeats}")

    def arrivals(self) -> tuple[int, ...]:
        """The arrival sizes in rows, "B" replaced by ``batch_size``, each once."""
        sizes = (self.batch_size if a == "B" else a for a in self.arrival_sizes)
        return tuple(dict.fromkeys(sizes))

    def make_ladder(self) -> tuple[int, ...]:
        """The bucket ladder of ``batch_size`` these options ask for."""
        growth = 2.0 if self.ladder == "pow2" else self.ladder_growth
        return make_ladder(self.batch_size, kind=self.ladder, growth=growth)


def _arrival_size(value) -> int | str:
    """``"B"`` (the batch size) or a positive number of rows, from a flag's string or not."""
    text = str(value).strip()
    if text.upper() == "B":
        return "B"
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--arrival_sizes takes B or positive integers, got {value!r}")
    return int(text)
