"""Progress bars that read well wherever fci runs.

`bar(...)` is `tqdm` with three rules. In a Jupyter kernel with ipywidgets it
is a widget bar (`tqdm.notebook`); without ipywidgets it is a plain text bar,
with no "IProgress not found" warning. A bar opened while another is open
(a per-fit bar inside the schedule's bar over trials) is shown only on a
terminal: elsewhere (a notebook's text output, a log file, CI) tqdm can only
draw nested bars with cursor-up escapes, which print as "[A" fragments.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.std import tqdm as _text_tqdm

__all__ = ["bar", "in_notebook", "widgets_available"]


def in_notebook() -> bool:
    """Whether this process is a Jupyter (IPython) kernel."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:
        return False
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _terminal() -> bool:
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def bar(*args: Any, **kwargs: Any) -> Any:
    """A progress bar (tqdm's arguments): a widget in a notebook with ipywidgets,
    else text; a nested bar only on a terminal."""
    if in_notebook() and widgets_available():
        from tqdm.notebook import tqdm as widget_tqdm

        return widget_tqdm(*args, **kwargs)
    if any(not b.disable for b in list(_text_tqdm._instances)) and not _terminal():  # type: ignore[attr-defined]
        kwargs["disable"] = True
    return _text_tqdm(*args, **kwargs)
