"""Settings of the package, logging and warnings, as scanpy has them.

- ``sc_syncot.settings.verbosity``: 0 errors, 1 warnings, 2 information (what a fit chose: geometry, grid or graph
  size, delta, epsilon, warp strength), 3 debugging. Unset (``None``) it follows ``scanpy.settings.verbosity``
  (scanpy is a dependency; its default, 1, shows warnings only).
- Log lines of the ``"sc_syncot"`` logger go to standard error through one handler, which prints what the
  verbosity allows. When the application has configured logging itself (the root logger has handlers), the records
  only propagate to those, so that no line is printed twice.
- What the user should act on is a :func:`warnings.warn` pointing at the user's own call (:func:`warn`), not a
  log line.
- Progress bars (tqdm.auto: a widget in notebooks, a bar on terminals; where output goes to a file, an info line
  every 30 s instead) are off at verbosity 0.
- ``sc_syncot.settings.figdir``: the folder that the plots' ``save=`` writes to. Unset (``None``) it follows
  ``scanpy.settings.figdir`` (default ``./figures``), and a ``save`` without a file extension takes scanpy's
  ``file_format_figs`` (default ``pdf``).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
PACKAGE_DIR = str(Path(__file__).resolve().parent)


def scanpy_setting(name: str, default):
    """``scanpy.settings.<name>`` when scanpy has been imported (this does not import it), else ``default``."""
    scanpy = sys.modules.get("scanpy")
    return getattr(getattr(scanpy, "settings", None), name, default)


class Settings:
    """``verbosity`` and ``figdir`` (see the module's description), read where they act: changes act at once."""

    def __init__(self) -> None:
        self._verbosity: int | None = None
        self._figdir: Path | None = None

    @property
    def verbosity(self) -> int:
        """0 errors, 1 warnings, 2 information, 3 debugging; ``None`` (the default) follows scanpy's."""
        if self._verbosity is not None:
            return self._verbosity
        try:
            return int(scanpy_setting("verbosity", 1))
        except (TypeError, ValueError):
            return 1

    @verbosity.setter
    def verbosity(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3):
            raise ValueError(f"verbosity: expected 0, 1, 2, 3 or None (follow scanpy), got {value!r}")
        self._verbosity = value

    @property
    def figdir(self) -> Path:
        """Folder of the figures that the plots' ``save=`` writes; ``None`` (the default) follows scanpy's."""
        return self._figdir if self._figdir is not None else Path(scanpy_setting("figdir", "figures"))

    @figdir.setter
    def figdir(self, value: str | os.PathLike | None) -> None:
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"figdir: expected a folder (str or path) or None (follow scanpy), got {value!r}")
        self._figdir = None if value is None else Path(value)

    def __repr__(self) -> str:
        def follows(own):
            return " (scanpy's)" if own is None else ""

        return (
            f"sc_syncot settings: verbosity={self.verbosity}{follows(self._verbosity)}, "
            f"figdir={str(self.figdir)!r}{follows(self._figdir)}"
        )


settings = Settings()


class _VerbosityHandler(logging.Handler):
    """Standard error, as the verbosity allows; silent when the application configured logging itself."""

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:  # the records reach the application's own handlers
            return
        if record.levelno < LEVELS[settings.verbosity]:
            return
        try:
            sys.stderr.write(self.format(record) + "\n")  # the stream of the moment (notebooks replace it)
        except Exception:  # noqa: BLE001 (logging must never break a computation)
            self.handleError(record)


def configure_logger() -> logging.Logger:
    """The ``"sc_syncot"`` logger with its one handler (idempotent)."""
    logger = logging.getLogger("sc_syncot")
    logger.setLevel(logging.DEBUG)  # the handler filters; the application's handlers keep their own levels
    if not any(isinstance(h, _VerbosityHandler) for h in logger.handlers):
        handler = _VerbosityHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    return logger


def user_stacklevel() -> int:
    """``stacklevel`` for :func:`warnings.warn` called here that names the first frame outside the package."""
    frame, level = sys._getframe(1), 1  # the caller of this function is level 1 for warnings.warn there
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """:func:`warnings.warn` attributed to the user's call into the package (however deep the caller is)."""
    warnings.warn(message, category, stacklevel=user_stacklevel())


def show_progress(progress: bool) -> bool | None:
    """Tqdm's ``disable``: off when not asked or at verbosity 0; in notebooks always shown; else on terminals."""
    if not progress or settings.verbosity == 0:
        return True
    if "ipykernel" in sys.modules:  # a notebook: tqdm.auto draws a widget, whatever isatty says
        return False
    return None  # tqdm decides: shown on a terminal, not in a log file (which carriage returns would flood)
