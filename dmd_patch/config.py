"""Options of the dynamically masked discriminator (DMD).

Method: W. Zhang et al., "Dynamically Masked Discriminator for GANs", NeurIPS 2023,
arXiv 2306.07716. Each field maps to one `train.py` flag, named in `FLAG_NAMES`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

DETECT_MODES = ("prev", "ema")
SPEED_MODES = ("global", "block")
POLICIES = ("toggle", "pulse", "always", "never")
RESAMPLE_MODES = ("interval", "batch")

# Field name -> train.py flag, so errors point at what the user typed.
FLAG_NAMES = {
    "interval_kimg": "--dmd-interval",
    "detect": "--dmd-detect",
    "ema_beta": "--dmd-ema-beta",
    "tol": "--dmd-tol",
    "warmup_kimg": "--dmd-warmup",
    "speed": "--dmd-speed",
    "policy": "--dmd-policy",
    "layers": "--dmd-layers",
    "ratio": "--dmd-ratio",
    "rescale": "--dmd-rescale",
    "resample": "--dmd-resample",
    "seed": "--seed",
}


@dataclasses.dataclass
class DMDConfig:
    """Options of the dynamically masked discriminator, with the method's defaults."""

    interval_kimg: float = 4.0  # Length of one detection interval, in thousands of real images.
    detect: str = "prev"  # Reference speed: 'prev' = previous speed, 'ema' = EMA of past speeds.
    ema_beta: float = 0.9  # Decay of the speed EMA when detect='ema'. 1 = ref stays at s_1.
    tol: float = 0.0  # Retarded when speed < (1 - tol) * reference. 0 = any drop, 1 = never.
    warmup_kimg: float = 0.0  # No detection before this many kimg. 0 = detect from the start.
    speed: str = "global"  # 'global' = all parameters as one vector, 'block' = mean over blocks.
    policy: str = "toggle"  # 'toggle', 'pulse', 'always' (ablation) or 'never' (baseline).
    layers: list[int] | None = None  # Masked block output resolutions. None = [max(8, res // 8)].
    ratio: float = 0.25  # Fraction of spatial positions zeroed by a mask, in [0, 1).
    rescale: bool = True  # Scale kept positions by 1 / (1 - ratio).
    resample: str = "interval"  # New pattern per 'interval' (when masks go on) or per 'batch'.
    seed: int = 0  # Seed of the mask generator.

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> DMDConfig:
        """Build a config from a dict such as `dmd_kwargs`. None or {} gives the defaults."""
        options = dict(options or {})
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"dmd_kwargs: unknown DMD option(s) {unknown}; valid options are {sorted(known)}"
            )
        if options.get("layers") is not None:
            options["layers"] = list(options["layers"])
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        """Return the options as a JSON-serializable dict that `from_dict` accepts."""
        options = dataclasses.asdict(self)
        if options["layers"] is not None:
            options["layers"] = [int(res) for res in options["layers"]]
        return options

    def resolve_layers(self, img_resolution: int) -> list[int]:
        """Return the masked block output resolutions, sorted from high to low."""
        if self.layers is None:
            return [max(8, img_resolution // 8)]
        return sorted({int(res) for res in self.layers}, reverse=True)

    def interval_nimg(self) -> int:
        """Return the interval length in images (rounded to the nearest image)."""
        return int(round(self.interval_kimg * 1000))

    def validate(self, img_resolution: int, legal_layers: list[int] | None = None) -> None:
        """Raise ValueError naming the flag and its legal values if an option is invalid.

        `legal_layers` lists the discriminator's block output resolutions, high to low.
        None = those of the StyleGAN2 discriminator, from img_resolution / 2 down to 4.
        """
        self._check_choice("detect", DETECT_MODES)
        self._check_choice("speed", SPEED_MODES)
        self._check_choice("policy", POLICIES)
        self._check_choice("resample", RESAMPLE_MODES)
        self._check_number("interval_kimg", "a number > 0", lambda v: v > 0)
        if self.interval_nimg() < 1:
            self._fail("interval_kimg", "at least 0.001 (one image)")
        self._check_number("ema_beta", "a number in [0, 1]", lambda v: 0 <= v <= 1)
        self._check_number("tol", "a number in [0, 1]", lambda v: 0 <= v <= 1)
        self._check_number("warmup_kimg", "a number >= 0", lambda v: v >= 0)
        self._check_number("ratio", "a number in [0, 1)", lambda v: 0 <= v < 1)
        if self.rescale not in (0, 1):  # True and False compare equal to 1 and 0.
            self._fail("rescale", "0 or 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            self._fail("seed", "an integer >= 0")
        self._check_layers(img_resolution, legal_layers)

    def _check_layers(self, img_resolution: int, legal: list[int] | None) -> None:
        if legal is None:
            legal = block_output_resolutions(img_resolution)
        layers = self.resolve_layers(img_resolution) if self.layers is None else list(self.layers)
        if not layers:
            self._fail("layers", f"a non-empty comma-separated list from {legal}")
        for res in layers:
            if isinstance(res, bool) or not isinstance(res, int) or res not in legal:
                self._fail(
                    "layers",
                    f"discriminator block output resolutions for a {img_resolution}x"
                    f"{img_resolution} image, i.e. values from {legal} (invalid entry {res!r})",
                )

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        if getattr(self, name) not in choices:
            self._fail(name, "one of " + ", ".join(repr(choice) for choice in choices))

    def _check_number(self, name: str, legal: str, is_legal) -> None:
        value = getattr(self, name)
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or not math.isfinite(value) or not is_legal(value):
            self._fail(name, legal)

    def _fail(self, name: str, legal: str) -> None:
        raise ValueError(
            f"Invalid DMD option {FLAG_NAMES[name]}={getattr(self, name)!r}: expected {legal}"
        )


def block_output_resolutions(img_resolution: int) -> list[int]:
    """Return the output resolutions of the discriminator blocks: img_resolution / 2 down to 4."""
    if img_resolution < 8 or img_resolution & (img_resolution - 1):
        raise ValueError(
            f"Invalid image resolution {img_resolution}: DMD needs a power of two >= 8"
        )
    return [2**k for k in range(int(math.log2(img_resolution)) - 1, 1, -1)]
