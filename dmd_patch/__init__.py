"""Dynamically masked discriminator (DMD) for StyleGAN2/StyleGAN3-style training.

Method: W. Zhang et al., "Dynamically Masked Discriminator for GANs", NeurIPS 2023,
arXiv 2306.07716. The training loop selects it with
`D_kwargs.class_name='dmd_patch.networks.DMDDiscriminator'` (plus `dmd_kwargs`) and drives it
through `dmd_patch.hook.DMDHook`.
"""

from dmd_patch.config import DMDConfig
from dmd_patch.detector import DetectionResult, RetardationDetector
from dmd_patch.masker import FeatureMasker

__all__ = ["DMDConfig", "DetectionResult", "FeatureMasker", "RetardationDetector"]
