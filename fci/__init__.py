"""fci: Fixed Parameter Expansion and combinatorial interpretability.

Wider networks at the same non-zero parameter count do better; fci trains them
(`fci.train`), splits neurons (`fci.expand`), and reads their computation from
the weights (`fci.codes`, `fci.metrics`). See README.md.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
