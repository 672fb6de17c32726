"""Training recipes as data: a frozen `Recipe` says everything the one loop
(`digitrec.training.loop.fit`) needs to know about how to train, and the named recipes below are
every way this project trains a model.

    TRAIN          `digitrec train --model ARCH` (the flags replace its fields)
    FAST           `digitrec train --fast`: 99% MNIST test accuracy in 1.5 epochs
    BUNDLED        the bundled ensemble's members (`digitrec train-ensemble`), and
    FINE_TUNE      their fine-tuning rounds from those weights, with real-input renderings
    STYLE_FINE_TUNE  `train-ensemble --from DIR`: members fine-tuned with continental styles
    CORRECTIONS    `digitrec finetune`: each member on people's corrections + MNIST replay
    COMPARE_MLP    the MLP baseline of `digitrec compare`
    COMPARE_QUICK  the CNNs `digitrec compare --quick` trains fresh

No torch here: the CLI's parser may import this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class Recipe:
    """How to train one model. Which images (`limit`, `full`) and how many threads are run
    settings of `loop.train`, not part of the recipe."""

    name: str  # recorded on the model card as "recipe"
    architecture: str  # a registered architecture (digitrec.models.list_models())
    epochs: float = 15  # passes over the data; a fraction stops part-way through the last one
    batch_size: int = 128
    lr: float = 3e-3  # peak of the one-cycle schedule
    optimizer: str = "adamw"  # "adamw", or "sgd" (with momentum and nesterov below)
    momentum: float = 0.9  # sgd only
    nesterov: bool = True  # sgd only
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    augment: bool = True  # random affine warp of every batch (training/augment.py)
    elastic: bool = False  # elastic distortion on top of the affine
    aug_strength: float = 1.0  # scale of the affine ranges
    real_input: float = 0.0  # add this fraction of extra real-input renderings of the images
    init: str | None = None  # start from these weights (fine-tuning) instead of random ones
    styles: float = 0.0  # add styled copies (training/styles.py: FRACTIONS x this) of the images
    distill: float = 0.0  # weight of a distillation loss toward the starting weights (`init`,
    # frozen) on the images that are not new (not styled copies, not corrections): learn the new
    # without forgetting the old (Li & Hoiem, "Learning without Forgetting", 2016)
    distill_temperature: float = 2.0
    seed: int = 0  # model initialisation, batch order and augmentation
    validate_each_epoch: bool = True  # validation accuracy after every epoch (else at the end)

    def __post_init__(self) -> None:
        problems = []
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                            f"not {self.optimizer!r}")
        if not self.epochs > 0:
            problems.append(f"epochs must be > 0, not {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1, not {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, not {self.lr}")
        if not self.real_input >= 0:
            problems.append(f"real_input must be >= 0, not {self.real_input}")
        if not self.styles >= 0:
            problems.append(f"styles must be >= 0, not {self.styles}")
        if not self.distill >= 0:
            problems.append(f"distill must be >= 0, not {self.distill}")
        if not self.distill_temperature > 0:
            problems.append(f"distill_temperature must be > 0, not {self.distill_temperature}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must be in [0, 1), not {self.label_smoothing}")
        if problems:
            raise ValueError(f"recipe {self.name!r}: {'; '.join(problems)}")

    def replace(self, **changes) -> Recipe:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields, JSON-ready (the model card's "hyperparameters")."""
        return dataclasses.asdict(self)


# `digitrec train --model ARCH`: AdamW + one-cycle, affine augmentation, validation each epoch.
# The CLI's flag defaults are these values (a test keeps them equal).
TRAIN = Recipe("train", "cnnbn")

# `digitrec train --fast`: a lean BN net, no augmentation (it does not pay this short),
# SGD-Nesterov one-cycle at a high peak rate, label smoothing; validated once, after the test
# evaluation, so that the time to test accuracy counts training and the test pass only.
FAST = Recipe("fast", "fastnet", epochs=1.5, lr=0.2, optimizer="sgd", label_smoothing=0.1,
              augment=False, validate_each_epoch=False)

# The bundled ensemble (see docs/training.md; the members were chosen among the trained
# candidates by validation accuracy, then log-loss): stage 1 from random weights ...
BUNDLED = {
    "cnnbn": TRAIN.replace(name="cnnbn", architecture="cnnbn", epochs=25, seed=0,
                           aug_strength=0.6, elastic=False),
    "vgg8b": TRAIN.replace(name="vgg8b", architecture="vgg8", epochs=11, seed=1,
                           aug_strength=0.7, elastic=True),
    "vgg8c": TRAIN.replace(name="vgg8c", architecture="vgg8", epochs=8, seed=2,
                           aug_strength=0.8, elastic=False),
}
# ... then fine-tuning rounds, each from the weights of the one before, with real-input
# renderings added: the changes to the member's recipe (the second vgg8 round was kept because
# it scored better on the validation renderings).
FINE_TUNE = {
    "cnnbn": ({"epochs": 3, "seed": 10, "lr": 1e-3, "real_input": 0.5},),
    "vgg8b": ({"epochs": 2, "seed": 11, "lr": 1e-3, "real_input": 0.5},
              {"epochs": 2, "seed": 21, "lr": 5e-4, "real_input": 0.5}),
    "vgg8c": ({"epochs": 2, "seed": 12, "lr": 1e-3, "real_input": 0.5},
              {"epochs": 2, "seed": 22, "lr": 5e-4, "real_input": 0.5}),
}


def fine_tuning(member: Recipe, weights: str) -> list[Recipe]:
    """The fine-tuning rounds of a bundled member's recipe, each starting from `weights` (where
    the round before saved the member); none for other recipes."""
    rounds = FINE_TUNE.get(member.name, ())
    return [member.replace(name=f"{member.name} fine-tune {i}/{len(rounds)}", init=weights,
                           **changes) for i, changes in enumerate(rounds, 1)]


# `digitrec train-ensemble --from DIR` (issue 15, real writers): each member fine-tuned from its
# weights in DIR (e.g. the bundled ones) on MNIST with continental-style copies added (1s with
# a flag and sometimes a base, 7s with a crossbar, 0s with a slash; training/styles.py) and
# real-input renderings, short enough for the whole ensemble to run in about 25 minutes on 2
# CPU cores. Never any DigiLeTs digit: the styles come from how people write, not from it.
STYLE_FINE_TUNE = {
    "cnnbn": ({"epochs": 0.55, "seed": 30, "lr": 7e-4, "real_input": 0.1, "styles": 1.0},),
    "vgg8b": ({"epochs": 0.5, "seed": 31, "lr": 7e-4, "real_input": 0.1, "styles": 1.0},),
    "vgg8c": ({"epochs": 0.5, "seed": 32, "lr": 7e-4, "real_input": 0.1, "styles": 1.0},),
}


def style_fine_tuning(member: Recipe, start: str, weights: str) -> list[Recipe]:
    """The STYLE_FINE_TUNE rounds of a bundled member: the first from `start` (the member's
    weights to fine-tune), each later one from `weights` (where the round before saved it)."""
    rounds = STYLE_FINE_TUNE.get(member.name, ())
    return [member.replace(name=f"{member.name} style fine-tune {i}/{len(rounds)}",
                           init=start if i == 1 else weights, **changes)
            for i, changes in enumerate(rounds, 1)]


# `digitrec finetune` (training/finetune.py): a short run from each served member's weights on
# people's corrections mixed with MNIST replay, at a low peak rate, lightly augmented; the
# architecture, seed and number of steps are set per member and run (`finetune.member_recipe`).
# The MNIST replay images are distilled from the member's own starting weights (docs/feedback.md).
CORRECTIONS = TRAIN.replace(name="finetune-corrections", epochs=1, lr=1e-4, aug_strength=0.6,
                            validate_each_epoch=False, distill=2.0)


# `digitrec compare`: trained without augmentation or label smoothing, AdamW + one-cycle, on the
# same images as the SVM (quick mode: 1 epoch, batch 64; compare.QUICK).
COMPARE_MLP = Recipe("compare-mlp", "mlp", epochs=15, lr=2e-3, label_smoothing=0.0,
                     augment=False)  # "mlp": compare.MLP, not a registered architecture
COMPARE_QUICK = Recipe("compare-quick", "cnn1", epochs=1, batch_size=64, label_smoothing=0.0,
                       augment=False)  # each registered architecture in turn
