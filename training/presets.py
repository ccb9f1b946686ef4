"""Named training settings: `python -m training fit --preset NAME --dataset DATA --name N [flags]`.

A preset is a model kind and flag defaults. They are inserted before the command line's own flags,
so any flag given explicitly overrides the preset's value. Presets hold generic choices only (the
architecture, the score reduction, the number of components): the same settings are meant for any
image data set and any class, never tuned to one. `python -m training presets` lists them.
"""

from __future__ import annotations

from typing import NamedTuple


class Preset(NamedTuple):
    description: str  # one line, shown by `python -m training presets`
    kind: str  # the --model it trains
    flags: tuple[str, ...]  # flag defaults, as command-line tokens


PRESETS: dict[str, Preset] = {
    "tabular": Preset(
        "feature rows: standardised PCA keeping 99% of the variance; score = residual + mean squared "
        "distance of the code to its 5 nearest training codes (at most 4096 kept)",
        "pca",
        ("--n-components", "0.99", "--score-neighbors", "5"),
    ),
    "one-class-pca": Preset(
        "one-class images: PCA k=16; score = (3x3-pooled squared error + mean squared distance of the "
        "code to its 5 nearest training codes) / the image's variance",
        "pca",
        ("--n-components", "16", "--score-pool", "3", "--score-neighbors", "5", "--score-relative"),
    ),
}


class PresetError(ValueError):
    """An unknown preset name, or --preset without one."""


def _preset_name(argv: list[str]) -> str | None:
    """The --preset value in argv (None when absent)."""
    for i, token in enumerate(argv):
        if token == "--preset":
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise PresetError(f"--preset: expected a name, one of {sorted(PRESETS)}")
            return argv[i + 1]
        if token.startswith("--preset="):
            return token.split("=", 1)[1]
    return None


def apply_preset(argv: list[str]) -> list[str]:
    """Insert a `fit` command's preset flags right after `fit`, before the explicit flags (which win)."""
    if not argv or argv[0] != "fit":
        return argv
    name = _preset_name(argv)
    if name is None:
        return argv
    preset = PRESETS.get(name)
    if preset is None:
        raise PresetError(f"--preset: unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return [argv[0], "--model", preset.kind, *preset.flags, *argv[1:]]


def describe() -> str:
    """One block per preset: name, kind and description, then the flags it sets."""
    lines = []
    for name, p in PRESETS.items():
        lines.append(f"{name}\t{p.kind}\t{p.description}")
        lines.append(f"\tflags: --model {p.kind} {' '.join(p.flags)}")
    return "\n".join(lines)
