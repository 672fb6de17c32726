"""`digitrec compare`: an SVM, an MLP, each CNN and their ensemble on one MNIST split, measured for
accuracy, errors, training time, speed and size (digitrec.evaluation.report writes it up as
Markdown, HTML, PNGs and JSON).

The seed project compared SVM, MLP and CNN with matplotlib plots; this does the same honestly: every
model is scored on the same test images, and the report says how each one was obtained.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sklearn
import torch
import torch.nn.functional as F
from safetensors.torch import save as safetensors_bytes
from sklearn.decomposition import PCA
from sklearn.metrics import confusion_matrix
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import SVC
from torch import nn
from tqdm import tqdm

from digitrec import __version__
from digitrec.data.mnist import load_mnist
from digitrec.errors import ModelError
from digitrec.models import (
    BUNDLED_DIR,
    Ensemble,
    create_model,
    list_models,
    load_ensemble,
    parameter_count,
)
from digitrec.recognizer import Recognizer
from digitrec.training.loop import fit, predict_proba
from digitrec.training.recipes import COMPARE_MLP, COMPARE_QUICK, FAST, Recipe

SVM_COMPONENTS, SVM_C = 50, 10.0
# quick: the first images of each split, and the epochs and batch size of COMPARE_QUICK for the
# MLP too; "repeats": single-image latency measurements
QUICK = {"train": 3000, "val": 1000, "test": 1000, "repeats": 10}
FULL = {"repeats": 50}


# --- the models that are trained here -----------------------------------------------------------

def deskew(images: np.ndarray, chunk: int = 10_000, progress: bool = False) -> np.ndarray:
    """Shear each digit upright and centre its mass (image moments), float32 in [0, 1].

    The classic preprocessing for kernel methods on MNIST: it removes slant, which a CNN learns to
    ignore but an RBF kernel on raw pixels cannot.
    """
    out = np.empty(images.shape, dtype=np.float32)
    starts = range(0, len(images), chunk)
    for start in tqdm(starts, desc="deskew", disable=not progress or len(starts) < 2,
                      leave=False, file=sys.stderr):
        x = torch.from_numpy(np.asarray(images[start:start + chunk], dtype=np.float32) / 255.0)
        n, h, w = x.shape
        rows = torch.arange(h, dtype=torch.float32).view(1, h, 1)
        cols = torch.arange(w, dtype=torch.float32).view(1, 1, w)
        mass = x.sum((1, 2)).clamp_min(1e-6)
        mean_r = ((x * rows).sum((1, 2)) / mass).view(n, 1, 1)
        mean_c = ((x * cols).sum((1, 2)) / mass).view(n, 1, 1)
        var_r = (x * (rows - mean_r) ** 2).sum((1, 2)) / mass
        cov = (x * (rows - mean_r) * (cols - mean_c)).sum((1, 2)) / mass
        shear = (cov / var_r.clamp_min(1e-6)).view(n, 1, 1)
        # output pixel (r, c) samples the input at mean + [[1, 0], [shear, 1]] @ (r, c) - centre
        dr, dc = rows - (h - 1) / 2, cols - (w - 1) / 2
        src_r = (mean_r + dr).expand(n, h, w)
        src_c = mean_c + shear * dr + dc
        grid = torch.stack([2 * src_c / (w - 1) - 1, 2 * src_r / (h - 1) - 1], dim=-1)
        warped = F.grid_sample(x.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros",
                               align_corners=True)
        out[start:start + n] = warped.squeeze(1).numpy()
    return out


def deskewed_pixels(images: np.ndarray) -> np.ndarray:
    """Deskewed images flattened to (N, 784) features, the SVM pipeline's first step."""
    return deskew(images, progress=len(images) > 20_000).reshape(len(images), -1)


def make_svm() -> Pipeline:
    """Deskew → PCA-50 → RBF SVC (C=10, gamma='scale'): ~99% on MNIST, fits in ~30 s on 55k."""
    return Pipeline([
        ("deskew", FunctionTransformer(deskewed_pixels)),
        ("pca", PCA(SVM_COMPONENTS, random_state=0)),
        ("svc", SVC(C=SVM_C, gamma="scale", cache_size=1000)),
    ])


def svm_arrays(svm: Pipeline) -> dict[str, np.ndarray]:
    """The fitted arrays inference needs (PCA basis, support vectors, dual coefficients)."""
    pca, svc = svm.named_steps["pca"], svm.named_steps["svc"]
    return {"pca.components": pca.components_, "pca.mean": pca.mean_,
            "svc.support_vectors": svc.support_vectors_, "svc.dual_coef": svc.dual_coef_,
            "svc.intercept": svc.intercept_, "svc.n_support": svc.n_support_}


class MLP(nn.Module):
    """784-256-128-10 multilayer perceptron with ReLU and dropout: the seed's MLP baseline."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 256), nn.ReLU(inplace=True), nn.Dropout(0.2),
            nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Dropout(0.2),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 10) for normalised images (N, 1, 28, 28)."""
        return self.layers(x)


# --- measuring ------------------------------------------------------------------------------------

@dataclass
class ModelResult:
    """One row of the comparison."""

    name: str
    kind: str  # svm, mlp, cnn or ensemble
    how: str  # how it was obtained, for the report
    accuracy: float
    errors: int
    training_seconds: float
    throughput: float  # images/s, batched
    latency_ms: float  # median single-image prediction
    parameters: int
    size_bytes: int
    history: list[float] = field(default_factory=list)  # val accuracy per epoch
    predictions: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((10, 10), np.int64),
                                  repr=False)

    def to_json(self) -> dict:
        """The numbers, JSON-ready (no predictions)."""
        return {"name": self.name, "kind": self.kind, "how": self.how,
                "test_accuracy": round(self.accuracy, 6), "errors": self.errors,
                "training_seconds": round(self.training_seconds, 2),
                "throughput_images_per_s": round(self.throughput, 1),
                "latency_ms": round(self.latency_ms, 3), "parameters": self.parameters,
                "size_bytes": self.size_bytes, "val_accuracy_per_epoch": self.history,
                "confusion": self.confusion.tolist()}


def measure(name: str, kind: str, how: str, predict: Callable[[np.ndarray], np.ndarray],
            test_x: np.ndarray, test_y: np.ndarray, repeats: int, **numbers) -> ModelResult:
    """Score `predict` (uint8 images → labels) on the test set, timing it batched and one by one."""
    predict(test_x[:100])  # warm-up: lazy allocations, kernel selection
    started = time.perf_counter()
    predictions = np.asarray(predict(test_x))
    throughput = len(test_x) / (time.perf_counter() - started)
    latencies = []
    for i in range(repeats):
        started = time.perf_counter()
        predict(test_x[i:i + 1])
        latencies.append(time.perf_counter() - started)
    wrong = predictions != test_y
    return ModelResult(name, kind, how, float(1 - wrong.mean()), int(wrong.sum()),
                       throughput=throughput, latency_ms=1000 * statistics.median(latencies),
                       predictions=predictions,
                       confusion=confusion_matrix(test_y, predictions, labels=range(10)),
                       **numbers)


def recognizer_predictor(recognizer: Recognizer) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 28x28 images → best guesses through the Recognizer (its backend), 1000 a batch."""
    return lambda images: np.concatenate(
        [[p.best_guess for p in recognizer.classify(images[i:i + 1000])]
         for i in range(0, len(images), 1000)]).astype(np.int64)


def torch_predictor(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 images → labels for a torch model or Ensemble, in batches of 1000."""
    return lambda images: predict_proba(model, images).argmax(1)


def state_bytes(model: nn.Module) -> int:
    """Size of the model's float32 safetensors serialisation, in bytes."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return len(safetensors_bytes(state))


# --- the comparison -------------------------------------------------------------------------------

@dataclass
class Comparison:
    """All rows plus the setting they were measured in and the test images (for the gallery)."""

    results: list[ModelResult]
    settings: dict
    test_images: np.ndarray
    test_labels: np.ndarray

    def common_errors(self) -> np.ndarray:
        """Indices of test images that every model misclassifies."""
        wrong = np.stack([r.predictions != self.test_labels for r in self.results])
        return np.flatnonzero(wrong.all(axis=0))

    def to_json(self) -> dict:
        """settings, one entry per model, and the commonly misclassified test indices."""
        return {"settings": self.settings, "models": [r.to_json() for r in self.results],
                "common_errors": self.common_errors().tolist()}


def _train_svm(train_x, train_y, test_x, test_y, repeats: int, log) -> ModelResult:
    log(f"svm: deskew → PCA-{SVM_COMPONENTS} → RBF SVC on {len(train_x):,} images "
        "(no progress bar inside libsvm)")
    svm = make_svm()
    started = time.perf_counter()
    svm.fit(train_x, train_y)
    seconds = time.perf_counter() - started
    arrays = svm_arrays(svm)
    n_sv = len(arrays["svc.support_vectors"])
    how = (f"scikit-learn {sklearn.__version__}: deskewed pixels → PCA-{SVM_COMPONENTS} → RBF SVC "
           f"(C={SVM_C:g}, gamma='scale', one-vs-one), trained on {len(train_x):,} images; "
           f"{n_sv:,} support vectors. Parameters and size count the float64 arrays inference "
           "needs (PCA basis and mean, support vectors, dual coefficients, intercepts).")
    return measure("svm", "svm", how, svm.predict, test_x, test_y, repeats,
                   training_seconds=seconds,
                   parameters=int(sum(a.size for a in arrays.values())),
                   size_bytes=int(sum(a.nbytes for a in arrays.values())))


def _fit(model: nn.Module, recipe: Recipe, train_x, train_y, val_x, val_y,
         progress: bool) -> tuple[list[float], float]:
    """Train through the one loop; (val accuracy per epoch, seconds of optimisation only)."""
    history = fit(model, train_x, train_y, recipe, val=(val_x, val_y), progress=progress)
    return [h["val_accuracy"] for h in history], history[-1]["seconds"]


def _train_mlp(train_x, train_y, val_x, val_y, test_x, test_y, recipe: Recipe,
               repeats: int, progress: bool) -> ModelResult:
    torch.manual_seed(recipe.seed)
    mlp = MLP()
    history, seconds = _fit(mlp, recipe, train_x, train_y, val_x, val_y, progress)
    how = (f"torch 784-256-128-10 ReLU MLP, dropout 0.2, no augmentation, AdamW + one-cycle "
           f"(peak lr {recipe.lr:g}), {recipe.epochs:g} epoch(s) of {len(train_x):,} images, "
           f"batch {recipe.batch_size} (recipe `{recipe.name}`); size is its float32 "
           "safetensors serialisation.")
    return measure("mlp", "mlp", how, torch_predictor(mlp.eval()), test_x, test_y, repeats,
                   training_seconds=seconds, parameters=parameter_count(mlp),
                   size_bytes=state_bytes(mlp), history=history)


def _quick_cnns(train_x, train_y, val_x, val_y, test_x, test_y,
                progress: bool) -> tuple[list[ModelResult], dict[str, nn.Module]]:
    results, members = [], {}
    for arch in list_models():
        recipe = COMPARE_QUICK.replace(architecture=arch)
        torch.manual_seed(recipe.seed)
        model = create_model(arch)
        history, seconds = _fit(model, recipe, train_x, train_y, val_x, val_y, progress)
        members[arch] = model.eval()
        how = (f"registered `{arch}` trained fresh: {recipe.epochs:g} epoch of "
               f"{len(train_x):,} images, batch {recipe.batch_size}, no augmentation, "
               f"AdamW + one-cycle (peak lr {recipe.lr:g}; recipe `{recipe.name}`); size is "
               "float32 safetensors.")
        results.append(measure(arch, "cnn", how, torch_predictor(model), test_x, test_y,
                               QUICK["repeats"], training_seconds=seconds,
                               parameters=parameter_count(model), size_bytes=state_bytes(model),
                               history=history))
    return results, members


def _load_weights(weights: Path) -> tuple[Ensemble, dict[str, dict]]:
    try:
        return load_ensemble(weights)
    except ModelError as exc:
        raise ModelError(f"{exc}: train them first (`digitrec train-ensemble`), or point "
                                "--weights at a directory of trained models (e.g. runs/bundle)"
                                ) from None


def shown_path(path: Path) -> str:
    """A weights directory as the report shows it: relative to the working directory when
    inside it, so that committed reports carry no machine-specific absolute paths."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _train_fastnet(data_dir, test_x, test_y, repeats: int, progress: bool) -> ModelResult:
    """`fastnet` ships no weights: `digitrec train --fast` trains it in well under a minute."""
    from digitrec.training.loop import train
    result = train(FAST, data_dir=data_dir, progress=progress, evaluate_test=False)
    card = result.card
    how = (f"`fastnet` trained fresh with the FAST recipe (`digitrec train --fast`: "
           f"{card['hyperparameters']['epochs']} epochs, SGD one-cycle, no augmentation) on "
           f"{card['trained_on']}; no validation curve (one pass).")
    return measure("fastnet", "cnn", how, torch_predictor(result.model), test_x, test_y, repeats,
                   training_seconds=float(card["training_seconds"]),
                   parameters=parameter_count(result.model),
                   size_bytes=state_bytes(result.model), history=[])


def _bundled_cnns(weights: Path, ensemble: Ensemble, cards: dict[str, dict], test_x, test_y,
                  repeats: int, progress: bool) -> list[ModelResult]:
    results = []
    for name, model in tqdm(ensemble.members.items(), desc="bundled CNNs", disable=not progress,
                            file=sys.stderr):
        card = cards[name]
        hp = card.get("hyperparameters", {})
        extras = [f"{hp['epochs']} epochs"] if "epochs" in hp else []
        extras += [k for k in ("augment", "elastic") if hp.get(k)]
        if card.get("fine_tuned_from"):
            extras[:1] = [f"fine-tuned {hp.get('epochs', '?')} epochs from `"
                          f"{card['fine_tuned_from'].get('command', '?')}`"]
        arch = card.get("architecture", name)
        how = (f"{'bundled' if weights == BUNDLED_DIR else shown_path(weights)} `{name}`"
               f"{f' ({arch})' if arch != name else ''}, {', '.join(extras)}; trained on "
               f"{card.get('trained_on', '?')}; training time and validation curve from its model "
               f"card{'' if card.get('val_held_out', True) else ' (validation NOT held out)'}; "
               f"size is the {card.get('dtype', 'float32')} safetensors file.")
        results.append(measure(
            name, "cnn", how, torch_predictor(model), test_x, test_y, repeats,
            training_seconds=float(card.get("total_training_seconds",
                                            card.get("training_seconds", float("nan")))),
            parameters=parameter_count(model),
            size_bytes=(weights / f"{name}.safetensors").stat().st_size,
            history=[h["val_accuracy"] for h in card.get("history", [])
                     if h.get("val_accuracy") is not None]))
    return results


def _splits(data_dir, quick: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """(images, labels) for train, val and test; the first N of each with `quick`."""
    mnist = load_mnist(data_dir)
    splits = []
    for name in ("train", "val", "test"):
        images, labels = mnist.split(name)
        n = QUICK[name] if quick else len(images)
        # writable copies: torch warns about tensors over read-only IDX buffers
        splits.append((np.array(images[:n]), labels[:n]))
    return splits


def run_comparison(quick: bool = False, weights: str | Path | None = None,
                   data_dir: str | Path | None = None, threads: int | None = None,
                   progress: bool = True) -> Comparison:
    """Train/load every model and measure it on the same test images (a subset with `quick`)."""
    log = (lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        started = time.perf_counter()
        if not quick:  # fail before the long SVM fit, not after it
            weights = Path(weights) if weights else BUNDLED_DIR
            ensemble, cards = _load_weights(weights)
        (train_x, train_y), (val_x, val_y), (test_x, test_y) = _splits(data_dir, quick)
        repeats = QUICK["repeats"] if quick else FULL["repeats"]
        mlp_recipe = COMPARE_MLP.replace(epochs=COMPARE_QUICK.epochs,
                                         batch_size=COMPARE_QUICK.batch_size) if quick \
            else COMPARE_MLP

        results = [_train_svm(train_x, train_y, test_x, test_y, repeats, log)]
        log(f"svm: test accuracy {results[0].accuracy:.4f}")
        results.append(_train_mlp(train_x, train_y, val_x, val_y, test_x, test_y, mlp_recipe,
                                  repeats, progress))
        log(f"mlp: test accuracy {results[1].accuracy:.4f}")
        missing: list[str] = []
        if quick:
            cnn_results, members = _quick_cnns(train_x, train_y, val_x, val_y, test_x, test_y,
                                               progress)
            ensemble = Ensemble(members).eval()
            ens_how = (f"softmax average of the {len(members)} quick CNNs above "
                       f"({', '.join(members)}).")
        else:
            cnn_results = _bundled_cnns(weights, ensemble, cards, test_x, test_y, repeats,
                                        progress)
            ens_how = (f"softmax average of the {len(cards)} models in {shown_path(weights)} "
                       f"({', '.join(cards)}); training time is the members' sum.")
            present = {card.get("architecture") for card in cards.values()}
            zoo = weights / "zoo"  # trained models shipped beside the ensemble, not in it
            if list(zoo.glob("*.safetensors")):
                zoo_ensemble, zoo_cards = load_ensemble(zoo)
                zoo_results = _bundled_cnns(zoo, zoo_ensemble, zoo_cards, test_x, test_y,
                                            repeats, progress)
                present |= {card.get("architecture") for card in zoo_cards.values()}
            else:
                zoo_results = []
            missing = [arch for arch in list_models() if arch not in present]
            if "fastnet" in missing:
                zoo_results.append(_train_fastnet(data_dir, test_x, test_y, repeats, progress))
                missing.remove("fastnet")
            if missing:
                log(f"warning: no trained model in {weights} for: {', '.join(missing)}")
        for r in cnn_results:
            log(f"{r.name}: test accuracy {r.accuracy:.4f}")
        results += cnn_results
        if not quick:
            results += zoo_results
        recognizer = (Recognizer(ensemble, {n: {} for n in ensemble.members}, threshold=0.0)
                      if quick else Recognizer.load(weights))
        ens_how += (f" Read through `Recognizer` ({recognizer.inference}), the path the CLI and "
                    "the web app use.")
        ensemble_result = measure(
            "ensemble", "ensemble", ens_how, recognizer_predictor(recognizer), test_x, test_y,
            repeats,
            training_seconds=sum(r.training_seconds for r in cnn_results),
            parameters=sum(r.parameters for r in cnn_results),
            size_bytes=sum(r.size_bytes for r in cnn_results))
        results.append(ensemble_result)
        log(f"ensemble: test accuracy {ensemble_result.accuracy:.4f}")
        settings = {
            "mode": "quick" if quick else "full",
            "train_images": len(train_x), "val_images": len(val_x), "test_images": len(test_x),
            "test_subset": f"first {len(test_x):,} of the 10,000 test images" if quick
                           else f"full {len(test_x):,}-image test set",
            "cnn_source": "trained fresh" if quick else shown_path(weights),
            "registered_without_weights": missing,
            "torch_threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
            "versions": {"digitrec": __version__, "torch": torch.__version__,
                         "scikit-learn": sklearn.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": round(time.perf_counter() - started, 1),
        }
        return Comparison(results, settings, test_x, test_y)
    finally:
        torch.set_num_threads(previous_threads)


# --- plots ----------------------------------------------------------------------------------------
