"""Render one PNG per study for the README from the figures of the default runs.

    python -m analyses.pictures [--results data/results] [--run default] [--out docs/analyses]

Reads `<results>/<study>/<run>/<figure>.plotly.json` (written beside every HTML
figure) and writes `<out>/<study>.png` with kaleido, which needs a Chrome or
Chromium on the machine (e.g. Debian's `chromium`); kaleido is not a
dependency of fci, so this is a maintainer's step: `pip install kaleido`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

# The picture of each study in the README.
PICTURES = {
    "capacity_vs_alpha": "metrics_vs_alpha",
    "superposition_sweep": "trends",
    "interference_regression": "regressions",
    "code_gallery": "gallery_alpha2",
    "decoding": "decoding",
    "effective_density": "effective_density",
    "wide_sparse": "wide_sparse",
    "real_data": "real_data",
    "deep_fpe": "deep_fpe",
    "structured_sparsity": "structured_sparsity",
    "regimes": "regime_map",
    "cnn_fpe": "cnn_fpe",
    "computational_capacity": "capacity",
}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analyses.pictures", description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="data/results", help="folder of the studies' outputs (default: data/results)")
    ap.add_argument("--run", default="default", help="which run of each study (its folder name; default: default)")
    ap.add_argument("--out", default="docs/analyses", help="where the PNGs go (default: docs/analyses)")
    ap.add_argument("--scale", type=float, default=1.0, help="pixel scale of the PNGs (default: 1)")
    args = ap.parse_args(argv)
    try:
        import kaleido  # noqa: F401
    except ImportError:
        ap.error("rendering PNGs needs kaleido (pip install kaleido) and a Chrome/Chromium")
    import plotly.io as pio

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    missing = []
    for study, stem in PICTURES.items():
        src = Path(args.results) / study / args.run / f"{stem}.plotly.json"
        if not src.is_file():
            missing.append(str(src))
            continue
        fig = pio.read_json(str(src))
        dst = out / f"{study}.png"
        fig.write_image(str(dst), scale=args.scale)
        print(f"{src} -> {dst}")
    if missing:
        print("missing (run the study first): " + ", ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
