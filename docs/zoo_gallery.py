"""Draw ``docs/gallery_zoo.png``: the curriculum zoo (``curricula/zoo.py``) as heatmaps.

    python docs/zoo_gallery.py [--out docs/gallery_zoo.png]

``python cli.py plot --curriculum all`` draws every registered curriculum; this draws only the zoo,
with the same ``visualize`` functions, so the figure stays readable. Epoch 5 is inside small_loss's
forget-rate ramp.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from curricula import get_curriculum  # noqa: E402
from curricula.zoo import ZOO  # noqa: E402
from visualize import describe_curriculum, gallery_surfaces  # noqa: E402
from visualize import draw  # noqa: E402

EPOCHS = (5, 50, 95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).with_name("gallery_zoo.png")))
    parser.add_argument("--dpi", type=float, default=80)
    args = parser.parse_args()
    frame = gallery_surfaces(ZOO, epochs=EPOCHS, resolution=81)
    labels = {name: describe_curriculum(get_curriculum(name)).replace(" (", "\n(") for name in ZOO}
    fig = draw.gallery_figure(frame, kind="heatmap", labels=labels, dpi=args.dpi,
                              figsize=draw.gallery_figure_size(len(ZOO), len(EPOCHS), "heatmap"),
                              title="The curriculum zoo: weight by loss and loss_diff (default parameters, label 0)")
    fig.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
