"""`digitrec export` and `digitrec quantize`: files derived from the weights, and where such
files go (never into the installed package)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from digitrec.errors import ModelError, UsageError

EXPORT_CHECK_IMAGES = 1000  # `digitrec export` compares the file with the reference on these


def weights_dir(args: argparse.Namespace) -> Path:
    """--weights, else $DIGITREC_WEIGHTS, else the bundled ensemble."""
    from digitrec.config import read
    from digitrec.models import BUNDLED_DIR

    chosen = Path(args.weights) if args.weights else read().weights
    return chosen or BUNDLED_DIR


def derived_files_dir(args: argparse.Namespace, source: Path) -> Path:
    """Where a command writes files derived from the weights in `source`: --out, else beside
    weights the user named, else $DIGITREC_HOME/weights. A directory other than `source`
    receives a copy of the weights, so that it can be loaded as it is (--weights DIR)."""
    from digitrec.config import read
    from digitrec.models import BUNDLED_DIR

    bundled = source.resolve() == BUNDLED_DIR.resolve()
    if args.out:
        out = Path(args.out)
    elif not bundled:
        out = source
    else:
        out = read().data_home() / "weights"
    if out.resolve() == BUNDLED_DIR.resolve() and not args.out:
        raise UsageError("refusing to write into the installed package: pass --out")
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != source.resolve():
        for file in sorted(source.glob("*.safetensors")) + sorted(source.glob("*.json")):
            if not (out / file.name).exists() or file.suffix == ".safetensors":
                shutil.copy2(file, out / file.name)
    return out


def quantize(args: argparse.Namespace) -> int:
    """Record int8 ranges → int8.json in --out, if the int8 graph is good enough to serve."""
    from digitrec.data.mnist import load_mnist
    from digitrec.inference import int8
    from digitrec.models import load_ensemble

    if args.images < 1:
        raise UsageError(f"--images must be at least 1, got {args.images}")
    source = weights_dir(args)
    ensemble, _ = load_ensemble(source)
    mnist = load_mnist(args.data_dir)
    ranges = int8.record_ranges(ensemble, mnist.split("train")[0][:args.images],
                                mnist.test_images, mnist.test_labels)
    print(f"int8 ({ranges['calibration_images']} for the ranges): test accuracy "
          f"{ranges['test_accuracy']:.2%} (fp32 {ranges['test_accuracy_fp32']:.2%}), "
          f"same prediction as fp32 on {ranges['test_agreement_with_fp32']:.2%} of "
          f"{ranges['test_images']:,} test images")
    if not int8.good_enough(ranges):
        print(f"digitrec quantize: error: below the bar for serving (accuracy "
              f"{int8.MIN_ACCURACY:.2%}, agreement {int8.MIN_AGREEMENT:.1%}): "
              "nothing written", file=sys.stderr)
        return 1
    out = derived_files_dir(args, source) / int8.INT8_FILE
    out.write_text(json.dumps(ranges) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} KB)")
    return 0


def export(args: argparse.Namespace) -> int:
    """One ONNX graph of the ensemble, checked against the reference ensemble."""
    if not args.onnx:
        raise UsageError("choose the format: --onnx (the only one so far)")
    import numpy as np
    import onnxruntime
    import torch

    from digitrec.data.mnist import load_mnist
    from digitrec.inference.onnx_backend import export_onnx, onnx_session
    from digitrec.models import load_ensemble, to_tensor

    ensemble, _ = load_ensemble(weights_dir(args))
    images = load_mnist(args.data_dir).test_images[:EXPORT_CHECK_IMAGES]
    path = export_onnx(ensemble, args.out)
    names = list(ensemble.members)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): input \"x\" float (N, 1, 28, 28) "
          f"normalised as for training, output \"p\" ({len(names)}, N, 10) per-member "
          f"probabilities of {', '.join(names)}")

    session = onnx_session(path)
    got, want = [], []
    with torch.inference_mode():
        for start in range(0, len(images), 250):
            x = to_tensor(images[start:start + 250])
            got.append(session.run(None, {"x": x.numpy()})[0])
            want.append(ensemble.member_probabilities(x).numpy())
    got, want = np.concatenate(got, axis=1), np.concatenate(want, axis=1)
    same = got.mean(0).argmax(1) == want.mean(0).argmax(1)
    members_same = bool((got.argmax(2) == want.argmax(2)).all())
    difference = float(np.abs(got - want).max())
    members_note = "every member's too" if members_same else "but NOT every member's"
    print(f"checked with onnxruntime {onnxruntime.__version__} on the first {len(images):,} "
          f"MNIST test images against the reference ensemble: {int(same.sum()):,}/"
          f"{len(images):,} predictions identical ({members_note}), largest probability "
          f"difference {difference:.1e}")
    if not (same.all() and members_same):
        raise ModelError(f"{path} does not predict what the reference ensemble predicts (the "
                         "file is kept for inspection)")
    return 0
