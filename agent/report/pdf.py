"""report.pdf: report.html laid out on A4 pages by WeasyPrint, with its print CSS (render.CSS).

WeasyPrint is an optional extra (`pip install 'greenai-agent[pdf]'`) with system libraries (Pango);
it is imported only when a PDF is asked for.
"""

from __future__ import annotations

import sys
from typing import Any

from agent.config.checks import ArgumentError

REQUIREMENT = "weasyprint>=62"


def _weasyprint() -> Any:
    """The weasyprint module; raises ArgumentError saying how to install what is missing."""
    try:
        import weasyprint
    except ImportError:
        raise ArgumentError(
            f"--format pdf needs WeasyPrint, which is not installed; install it with "
            f"`{sys.executable} -m pip install '{REQUIREMENT}'` (the project's pdf extra), or leave pdf out"
        ) from None
    except OSError as e:  # the package is there, but not Pango, which it loads at import
        raise ArgumentError(
            f"--format pdf: WeasyPrint cannot load its system libraries ({e}); install them, on "
            f"Debian/Ubuntu with `apt-get install libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0`"
        ) from None
    return weasyprint


def require() -> None:
    """Raise ArgumentError (one line, with the command to run) unless a PDF can be made here."""
    _weasyprint()


def pdf(html_text: str) -> bytes:
    """The PDF of a self-contained HTML page: its images are data: URIs, so nothing is fetched."""
    weasyprint = _weasyprint()
    return bytes(weasyprint.HTML(string=html_text).write_pdf())
