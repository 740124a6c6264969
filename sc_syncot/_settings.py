"""Settings of the package, logging and warnings, as scanpy has them.

- ``sc_syncot.settings.verbosity``: 0 errors, 1 warnings, 2 information (what a fit chose: geometry, grid or graph
  size, delta, epsilon, warp strength), 3 debugging. Unset (``None``) it follows ``scanpy.settings.verbosity``
  (scanpy is a dependency; its default, 1, shows warnings only).
- Log lines of the ``"sc_syncot"`` logger go to standard error through one handler, which prints what the
  verbosity allows. When the application has configured logging itself (the root logger has handlers), the records
  only propagate to those, so that no line is printed twice.
- What the user should act on is a :func:`warnings.warn` pointing at the user's own call (:func:`warn`), not a
  log line.
- Progress bars (tqdm.auto: a widget in notebooks, a bar on terminals) are off at verbosity 0.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
PACKAGE_DIR = str(Path(__file__).resolve().parent)


class Settings:
    """``verbosity`` (see the module's description), read at each log line: changes act at once."""

    def __init__(self) -> None:
        self._verbosity: int | None = None

    @property
    def verbosity(self) -> int:
        """0 errors, 1 warnings, 2 information, 3 debugging; ``None`` (the default) follows scanpy's."""
        if self._verbosity is not None:
            return self._verbosity
        scanpy = sys.modules.get("scanpy")
        try:
            return int(scanpy.settings.verbosity) if scanpy is not None else 1
        except (AttributeError, TypeError, ValueError):
            return 1

    @verbosity.setter
    def verbosity(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3):
            raise ValueError(f"verbosity: expected 0, 1, 2, 3 or None (follow scanpy), got {value!r}")
        self._verbosity = value

    def __repr__(self) -> str:
        follows = " (scanpy's)" if self._verbosity is None else ""
        return f"sc_syncot settings: verbosity={self.verbosity}{follows}"


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
