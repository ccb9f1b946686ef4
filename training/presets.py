"""Named training settings, as config objects: `fit --preset NAME` or `fit(preset(NAME), ...)`.

A preset is a `FitConfig`; on the command line, flags given explicitly override its fields. Presets
hold generic choices only (the architecture, the score, the number of components): the same
settings are meant for any image data set and any class, never tuned to one. `python -m training
presets` lists them with the flags they amount to.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.config import FitConfig, PCAConfig, ScoreConfig
from training.errors import PresetError, UsageError


@dataclass(frozen=True)
class Preset:
    description: str  # one line, shown by `python -m training presets`
    config: FitConfig  # the settings, with config.preset naming the preset


PRESETS: dict[str, Preset] = {
    "features": Preset(
        "feature rows (the default for tables and embedding vectors): PCA keeping 99% of the variance, "
        "standardised with each std floored at the stds' 75th percentile; score = residual + the mean "
        "squared distance of the code to its 5 nearest training codes (at most 4096 kept), that term "
        "weighted so both parts have one mean on the validation rows",
        FitConfig(
            "pca",
            pca=PCAConfig(n_components=0.99, scale_floor=0.75),
            score=ScoreConfig(neighbors=5, balance=True),
            preset="features",
        ),
    ),
    "tabular": Preset(
        "feature rows: standardised PCA keeping 99% of the variance; score = residual + mean squared "
        "distance of the code to its 5 nearest training codes (at most 4096 kept)",
        FitConfig("pca", pca=PCAConfig(n_components=0.99), score=ScoreConfig(neighbors=5), preset="tabular"),
    ),
    "one-class-pca": Preset(
        "one-class images: PCA k=16; score = (3x3-pooled squared error + mean squared distance of the "
        "code to its 5 nearest training codes) / the image's variance",
        FitConfig(
            "pca",
            pca=PCAConfig(n_components=16),
            score=ScoreConfig(pool=3, neighbors=5, relative=True),
            preset="one-class-pca",
        ),
    ),
    "one-class-images-pca": Preset(
        "one-class images without torch (the image default before the rotation term): PCA keeping 60% "
        "of the training images' variance (k from their spectrum, at least 4); score = (3x3-pooled "
        "squared error + mean squared distance of the code to its 5 nearest training codes) / the "
        "image's variance, plus at half weight the same without the division with the directions "
        "reaching 95% of the variance (each part divided by its 99% quantile on the validation rows)",
        FitConfig(
            "pca",
            pca=PCAConfig(n_components=0.6, min_components=4),
            score=ScoreConfig(pool=3, neighbors=5, relative=True, detail=0.95, detail_weight=0.5),
            preset="one-class-images-pca",
        ),
    ),
    "one-class-images": Preset(
        "the image default: one-class-images-pca's two parts, plus at quarter weight the rotation term (a "
        "small CNN trained for 4 epochs to tell the training images' four quarter turns apart, on images "
        "averaged down to a side of at least 14 pixels; the term is log(1 + the sum of -log p of the right "
        "turn)), the score so far and the term each divided by its 99% quantile on the validation rows",
        FitConfig(
            "pca",
            pca=PCAConfig(n_components=0.6, min_components=4),
            score=ScoreConfig(
                pool=3,
                neighbors=5,
                relative=True,
                detail=0.95,
                detail_weight=0.5,
                rotation=0.25,
                rotation_epochs=4,
                rotation_size=14,
            ),
            preset="one-class-images",
        ),
    ),
}


# the preset `fit` uses for each layout when it is given neither a model kind nor a preset
LAYOUT_DEFAULTS: dict[str, str] = {"features": "features", "image": "one-class-images"}


def default_config(layout: str) -> FitConfig:
    """The settings `fit` uses for rows of `layout` (features, image) when given no model or preset."""
    name = LAYOUT_DEFAULTS.get(layout)
    if name is None:
        raise UsageError(f"{layout} rows have no default model: give --model KIND (or --preset NAME)")
    return PRESETS[name].config


def preset(name: str) -> FitConfig:
    """The settings of preset `name`, or a PresetError listing the presets."""
    found = PRESETS.get(name)
    if found is None:
        raise PresetError(f"--preset: unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return found.config
