"""Robustness to label noise on real data: the baseline against MentorNet-weighted students.

    python benchmarks/noisy_accuracy.py [--methods none,self_paced_mentornet,...] [--noise 0.2,0.4,0.8]
        [--dataset fashion-mnist] [--subset 5000] [--studentnet mlp] [--epochs 100] [--seed 0]
        [--out docs/noisy_accuracy]

Every method uses the same student, data subset, noisy labels, epochs, optimiser and seed; only the
MentorNet differs (``none`` is plain cross-entropy through the same loop; ``NAME+relearn`` re-fits MentorNet NAME during
training at ``--relearn-epochs`` from the clean subset). The default setting is the
CPU regime in which the baseline memorises the noise: an MLP on 5,000 Fashion-MNIST images for 100
epochs, SGD with momentum 0.9, cosine learning rate from 0.1, batch 128, no weight decay.

Prints a Markdown table (final and best test accuracy, fraction of flipped labels the student fits,
and the weight's clean-vs-noisy AUC), and writes ``OUT.csv`` (one row per run), ``OUT_curves.csv``
(one row per run and epoch), ``OUT.png`` (test accuracy against epoch) and ``OUT.md``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import pandas as pd  # noqa: E402

from _table import markdown_table  # noqa: E402
from student_training.trainer import StudentConfig, prepare_run, summarize, train  # noqa: E402
from student_training.host_memory import keep_freed_memory  # noqa: E402

DEFAULT_METHODS = "none,self_paced_mentornet,focal_loss_mentornet,mentornet_pd"


def run_one(method: str, noise: float, args, workdir: Path) -> tuple[dict, pd.DataFrame]:
    mentornet = method.removesuffix("+relearn")
    config = StudentConfig(dataset=args.dataset, subset=args.subset, noise=noise, noise_type=args.noise_type,
                           studentnet=args.studentnet, mentornet=mentornet, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           clean_subset_fraction=args.clean_subset_fraction,
                           relearn_mentor=args.relearn_epochs if method.endswith("+relearn") else "never")
    run = prepare_run(config, workdir / f"{method}_{noise}")
    start = time.perf_counter()
    rows = train(run)
    summary = summarize(rows)
    result = {"method": method, "noise": noise, "final_accuracy": summary["final_test_accuracy"],
              "best_accuracy": summary["best_test_accuracy"], "fit_noisy": summary["final_fit_noisy"],
              "detector_auc": summary["final_detector_auc"], "seconds": round(time.perf_counter() - start, 1)}
    print(f"{method:<26} noise {noise:.1f}: final {result['final_accuracy']:.4f} best {result['best_accuracy']:.4f} "
          f"fit_noisy {result['fit_noisy']:.3f} ({result['seconds']} s)", file=sys.stderr, flush=True)
    curve = pd.DataFrame(rows).assign(method=method, noise=noise)
    return result, curve


def draw(curves: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    noises = sorted(curves["noise"].unique())
    figure = Figure(figsize=(4.2 * len(noises), 3.6), layout="constrained")
    axes = figure.subplots(1, len(noises), squeeze=False)[0]
    for axis, noise in zip(axes, noises):
        for method, group in curves[curves["noise"] == noise].groupby("method", sort=False):
            axis.plot(group["epoch"], group["test_accuracy"], label=method, linewidth=1.4)
        axis.set_title(f"symmetric noise {noise:.0%}")
        axis.set_xlabel("epoch")
        axis.set_ylabel("test accuracy")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=110)


def main() -> None:
    keep_freed_memory()  # as cli.py does, so that the students train as train-student trains them
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--noise", default="0.2,0.4,0.8")
    parser.add_argument("--noise-type", default="symmetric")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--studentnet", default="mlp")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate (default: the student's own, as train-student)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clean-subset-fraction", type=float, default=0.0,
                        help="hold this fraction out as a clean subset (for every method, so all train on the same "
                             "samples); needed by METHOD+relearn")
    parser.add_argument("--relearn-epochs", default="30,60",
                        help="progress epochs at which METHOD+relearn re-fits its MentorNet")
    parser.add_argument("--out", default="docs/noisy_accuracy", help="prefix of the files written")
    args = parser.parse_args()
    results, curves = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for noise in [float(x) for x in args.noise.split(",")]:
            for method in args.methods.split(","):
                result, curve = run_one(method, noise, args, Path(workdir))
                results.append(result)
                curves.append(curve)
    table = pd.DataFrame(results)
    curves = pd.concat(curves, ignore_index=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.parent / f"{out.name}.csv", index=False)  # not with_suffix: "bench_0.4" has no suffix
    curves.to_csv(out.parent / f"{out.name}_curves.csv", index=False)
    title = (f"{args.studentnet} on {args.subset} {args.dataset} images, {args.epochs} epochs, seed {args.seed}")
    draw(curves, out.parent / f"{out.name}.png", title)
    shown = table.copy()
    for column in ("final_accuracy", "best_accuracy", "fit_noisy", "detector_auc"):
        shown[column] = shown[column].map("{:.4f}".format)
    command = "python benchmarks/noisy_accuracy.py " + shlex.join(sys.argv[1:])
    text = f"{title}\n\n`{command.strip()}`\n\n{markdown_table(shown, index=False)}\n"
    (out.parent / f"{out.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
