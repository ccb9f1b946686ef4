"""The training side's own errors; `python -m training` turns each into one line on stderr.

    TrainingError                exit 2 (base; never raised bare)
    ├── UsageError               a setting (flag or config field) that cannot apply, named in the message
    │   ├── PresetError          an unknown preset name, or --preset without one
    │   └── EvaluationError      `evaluate` cannot run as asked (no such version, unlabelled data...)
    ├── DataError                a data set could not be found or read: which file, row and why
    └── ExportError              an export failed verification; nothing was published

UsageError and DataError are also ValueErrors, as scikit-learn raises for bad hyper-parameters and
bad rows. Any other exception is a bug and keeps its traceback. The registry's own failures (not
writable, a failed write) are `training.publish.RegistryNotWritable` / `PublishError`, exit 1.
"""

from __future__ import annotations


class TrainingError(Exception):
    """Base of the errors `python -m training` reports as one line (exit 2)."""


class UsageError(TrainingError, ValueError):
    """A setting that cannot apply to this model or these rows; the message names the flag."""


class PresetError(UsageError):
    """An unknown preset name, or --preset without one."""


class EvaluationError(UsageError):
    """The evaluation cannot run as asked; the message says why and what would work."""


class DataError(TrainingError, ValueError):
    """A data set could not be found or read; the message says which file, row and why."""


class ExportError(TrainingError):
    """An export failed verification (a format disagrees with the trained model); nothing was published."""
