"""Does learning from corrections help? Simulated users with real people's pen strokes (DigiLeTs).

1. Writers: the 77 DigiLeTs writers, ids sorted, shuffled with --seed: the first 50 correct,
   the other 27 are never seen (writer-disjoint).
2. Every digit is drawn exactly as the page's pad draws it (digitrec.data.strokes, style
   "canvas") and read by the served ensemble (the bundled weights, their default backend).
3. The 50 writers' digits the ensemble got wrong (best guess), plus as many it got right (chosen
   at random with --seed), are posted through the real POST /api/feedback (Flask's test client
   of create_app, a temporary SQLite database), as the page posts them.
4. `digitrec finetune` on that database (the real command), into a temporary directory.
5. The 27 unseen writers' digits are read before and after: best-guess error, abstention rate,
   accuracy of the answers given; MNIST test before/after come from the new model cards.
6. Per writer: for each of --per-writer unseen writers (those the base reads worst, ties by id),
   20 of their own digits (two per class, seeded) are posted to a fresh database and the base
   is fine-tuned on them alone (--holdout 0); their remaining 30 digits are read before/after.

    python scripts/feedback_experiment.py [--strokes ../shared/digilets/digits.jsonl]
        [--steps 150] [--writer-steps 60] [--per-writer 3] [--json results.json]

Nothing of DigiLeTs is kept: the databases and the fine-tuned weights live in a temporary
directory (--work to keep them elsewhere, outside the repository)."""

from __future__ import annotations

import argparse
import io
import json
import platform
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from digitrec.cli import main as digitrec
from digitrec.data.strokes import load_strokes, render_strokes
from digitrec.recognizer import Recognizer
from digitrec.web import create_app

ROOT = Path(__file__).resolve().parents[1]
CONTRIBUTORS = 50
PER_WRITER_CORRECTIONS = 2  # per digit class: 20 of a writer's 50


def png(strokes) -> bytes:
    """The digit as the page's pad exports it (PNG bytes)."""
    out = io.BytesIO()
    render_strokes(strokes, style="canvas").save(out, format="PNG")
    return out.getvalue()


def scores(predictions, labels: np.ndarray) -> dict:
    """Best-guess error, abstention rate, accuracy of the answers given."""
    guess = np.array([p.best_guess for p in predictions])
    abstained = np.array([p.abstained for p in predictions])
    right = guess == labels
    return {"images": len(labels), "error": float(1 - right.mean()), "errors": int((~right).sum()),
            "abstained": float(abstained.mean()),
            "accuracy_answered": float(right[~abstained].mean()) if (~abstained).any() else None}


def post_all(db: str, recognizer: Recognizer, items: list[tuple[bytes, int]]) -> None:
    """Post each (png, label) through POST /api/feedback as the page does."""
    client = create_app({"RECOGNIZER": recognizer, "TESTING": True, "DB_URL": db}).test_client()
    for data, label in tqdm(items, desc="POST /api/feedback", file=sys.stderr, leave=False):
        response = client.post("/api/feedback", data={
            "image": (io.BytesIO(data), "digit.png", "image/png"), "label": str(label),
            "mode": "digit", "source": "page"}, content_type="multipart/form-data")
        if response.status_code != 201:
            raise SystemExit(f"POST /api/feedback answered {response.status_code}: "
                             f"{response.get_json()}")


def finetune(db: str, out: Path, flags: list[str]) -> tuple[int, dict | None]:
    """`digitrec finetune` on `db` into `out`: its exit status and the run's summary."""
    rc = digitrec(["finetune", "--db", db, "--out", str(out), *flags])
    if rc != 0:
        return rc, None
    for path in sorted(out.glob("*.json")):  # every member's card holds the run's summary
        card = json.loads(path.read_text())
        if "finetune" in card:
            return rc, card["finetune"]
    raise SystemExit(f"no model card with a finetune summary in {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strokes", default=str(ROOT.parent / "shared/digilets/digits.jsonl"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=150, help="finetune --steps (50 writers)")
    parser.add_argument("--writer-steps", type=int, default=60,
                        help="finetune --steps for one writer's 20 corrections")
    parser.add_argument("--per-writer", type=int, default=3, help="writers, one run each")
    parser.add_argument("--finetune-flags", default="", help="more finetune flags (quoted)")
    parser.add_argument("--work", help="keep databases and weights here (default: temporary)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    started = time.perf_counter()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="digitrec-feedback-"))
    work.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(args.finetune_flags)

    digits = load_strokes(args.strokes)
    writers = sorted({d.writer for d in digits})
    order = np.random.default_rng(args.seed).permutation(len(writers))
    contributors = sorted(writers[i] for i in order[:CONTRIBUTORS])
    unseen = sorted(writers[i] for i in order[CONTRIBUTORS:])
    print(f"{len(digits)} digits of {len(writers)} writers: {len(contributors)} correct, "
          f"{len(unseen)} unseen ({', '.join(unseen)})", file=sys.stderr)

    images = [png(d.strokes) for d in tqdm(digits, desc="drawing", file=sys.stderr)]
    labels = np.array([d.label for d in digits])
    who = np.array([d.writer for d in digits])
    base = Recognizer.load()
    base_read = base.predict_many(images, progress=True)
    failed = [k for k, p in enumerate(base_read) if not p.ok]
    if failed:
        raise SystemExit(f"{len(failed)} drawn digits could not be read: {failed[:10]}")
    images28 = np.stack([p.image28 for p in base_read])
    wrong = np.array([p.best_guess != y for p, y in zip(base_read, labels, strict=True)])

    # 1-5: the 50 writers' corrections → finetune → the 27 unseen writers
    rng = np.random.default_rng(args.seed)
    mine = np.isin(who, contributors)
    posted_wrong = np.flatnonzero(mine & wrong)
    right_pool = np.flatnonzero(mine & ~wrong)
    posted_right = np.sort(rng.choice(right_pool, size=min(len(posted_wrong), len(right_pool)),
                                      replace=False))
    posted = np.concatenate([posted_wrong, posted_right])
    db = f"sqlite:///{work / 'writers50.sqlite3'}"
    post_all(db, base, [(images[k], int(labels[k])) for k in posted])
    out = work / "writers50"
    rc, summary = finetune(db, out, ["--steps", str(args.steps), "--seed", str(args.seed),
                                     *extra])
    held = np.isin(who, unseen)
    results = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or ''}".strip(", "),
        "base_version": base.version, "base_inference": base.inference,
        "contributors": contributors, "unseen": unseen,
        "contributors_digits": int(mine.sum()),
        "contributors_base_error": float(wrong[mine].mean()),
        "posted": {"wrong": len(posted_wrong), "right": len(posted_right)},
        "finetune_exit_status": rc,
        "unseen_before": scores([base_read[k] for k in np.flatnonzero(held)], labels[held]),
    }
    if summary is not None:
        new = Recognizer.load(out)
        results["unseen_after"] = scores(new.classify(images28[held]), labels[held])
        results["new_version"] = new.version
        results["new_inference"] = new.inference
        results["finetune"] = {k: summary[k] for k in ("mix", "steps", "before", "after",
                                                       "mnist_test_change_pt", "inference")}
        results["finetune"]["corrections"] = {k: v for k, v in summary["corrections"].items()
                                              if k != "source"}
        b, a = results["unseen_before"]["error"], results["unseen_after"]["error"]
        results["unseen_error_cut_relative"] = (b - a) / b if b else None

    save(results, args.json)

    # 6: one writer's own 20 corrections → that writer's other 30 digits
    base_errors = {w: int(wrong[who == w].sum()) for w in unseen}
    chosen = sorted(unseen, key=lambda w: (-base_errors[w], w))[:args.per_writer]
    per_writer = []
    for writer in chosen:
        theirs = np.flatnonzero(who == writer)
        by_label = defaultdict(list)
        for k in theirs:
            by_label[int(labels[k])].append(k)
        picks = np.sort(np.concatenate([
            np.random.default_rng([args.seed, int(writer), d]).choice(
                by_label[d], size=PER_WRITER_CORRECTIONS, replace=False)
            for d in sorted(by_label)]))
        rest = np.setdiff1d(theirs, picks)
        wdb = f"sqlite:///{work / f'writer{writer}.sqlite3'}"
        post_all(wdb, base, [(images[k], int(labels[k])) for k in picks])
        wout = work / f"writer{writer}"
        wrc, wsummary = finetune(wdb, wout, ["--steps", str(args.writer_steps), "--holdout", "0",
                                             "--seed", str(args.seed), *extra])
        row = {"writer": writer, "base_errors_of_50": base_errors[writer],
               "corrections": len(picks), "corrections_wrong": int(wrong[picks].sum()),
               "finetune_exit_status": wrc,
               "rest_before": scores([base_read[k] for k in rest], labels[rest])}
        if wsummary is not None:
            row["rest_after"] = scores(Recognizer.load(wout).classify(images28[rest]),
                                       labels[rest])
            row["mnist_before"] = wsummary["before"]["mnist_test"]["accuracy"]
            row["mnist_after"] = wsummary["after"]["mnist_test"]["accuracy"]
        per_writer.append(row)
        results["per_writer"] = per_writer
        save(results, args.json)
    results["per_writer"] = per_writer
    results["seconds"] = round(time.perf_counter() - started)
    results["work"] = str(work)
    print(json.dumps(results, indent=2))
    save(results, args.json)
    return 0


def save(results: dict, path: str | None) -> None:
    """Write the results so far (each phase adds to them) to `path`, when given."""
    if path:
        Path(path).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
