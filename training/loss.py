"""The StyleGAN2 training objective: non-saturating logistic loss, lazy R1 on real images and
path-length regularization (Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN", CVPR 2020). StyleGAN3 trains with the same loss, without path-length
regularization and style mixing, and for -R with a blur of every input image of D that fades out
early in training (Karras et al., "Alias-Free Generative Adversarial Networks", NeurIPS 2021).

BigGANLoss is the hinge loss that BigGAN trains with (Brock et al., "Large Scale GAN Training
for High Fidelity Natural Image Synthesis", ICLR 2019), with no regularization.

Neither loss has DMD code. A masked discriminator is just another `D`, and its masks act on
every D forward pass made here (Gmain, Dmain and the R1 term alike).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import training_stats
from torch_utils.compiling import CompiledForwards
from torch_utils.ops import upfirdn2d

PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")


class Loss:
    """Interface the training loop calls once per phase and minibatch round."""

    def __init__(
        self,
        device: torch.device,
        G: torch.nn.Module,
        D: torch.nn.Module,
        augment_pipe: torch.nn.Module
        | None = None,  # Applied to every D input; None = no augmentation.
    ):
        self.device = device
        self.G = G
        self.D = D
        self.augment_pipe = augment_pipe
        self.compiled: CompiledForwards | None = None  # Set by use_compiled_forwards().
        self.reset_loss_check()

    def compiled_modules(self) -> list[torch.nn.Module]:
        """Return the modules whose forward this loss calls, for use_compiled_forwards()."""
        return [self.G, self.D]

    def use_compiled_forwards(self) -> None:
        """Compile the forwards of compiled_modules() with torch.compile. The training loop
        runs each phase inside self.compiled.active(), and the parts that need gradients of
        gradients run inside self.eager()."""
        self.compiled = CompiledForwards(self.compiled_modules())

    def eager(self) -> contextlib.AbstractContextManager:
        """Context in which the networks run their eager forwards."""
        return self.compiled.suspended() if self.compiled is not None else contextlib.nullcontext()

    def reset_loss_check(self) -> None:
        """Start a new loss_check: 0, until a loss passed to backward() is NaN or Inf."""
        # The training loop checks it with the gradients: a non-finite loss can still give
        # finite (zero) gradients, for example when D's outputs saturate.
        self.loss_check = torch.zeros([1], device=self.device)

    def backward(self, loss: torch.Tensor, gain: float) -> None:
        """Call backward() on loss.mean() * gain, and make loss_check NaN when the mean is NaN
        or Inf (times 0 keeps NaN and turns Inf into NaN), without a device synchronization."""
        value = loss.mean()
        self.loss_check = self.loss_check + value.detach() * 0
        value.mul(gain).backward()

    def augment(self, img: torch.Tensor) -> torch.Tensor:
        """Return img [N, C, H, W] through the augmentation pipe, or unchanged without one."""
        if self.augment_pipe is None:
            return img
        return self.augment_pipe(img)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        raise NotImplementedError()


class StyleGAN2Loss(Loss):
    def __init__(
        self,
        device: torch.device,
        G: torch.nn.Module,
        D: torch.nn.Module,
        augment_pipe: torch.nn.Module
        | None = None,  # Applied to every D input; None = no augmentation.
        r1_gamma: float = 10.0,  # R1 weight gamma; the penalty is gamma / 2 * ||grad||^2. 0 = off.
        style_mixing_prob: float = 0.0,  # Probability of mixing two latents per minibatch. 0 = off.
        pl_weight: float = 0.0,  # Path-length regularization weight. 0 = off.
        pl_batch_shrink: int = 2,  # Path-length minibatch is batch_gpu // pl_batch_shrink.
        pl_decay: float = 0.01,  # Decay of the running mean of path lengths.
        blur_init_sigma: float = 0.0,  # Blur of D's inputs at the start of training. 0 = off.
        blur_fade_kimg: float = 0.0,  # The blur fades linearly to 0 over this many kimg.
    ):
        super().__init__(device, G, D, augment_pipe)
        self.r1_gamma = float(r1_gamma)
        self.style_mixing_prob = float(style_mixing_prob)
        self.pl_weight = float(pl_weight)
        self.pl_batch_shrink = int(pl_batch_shrink)
        self.pl_decay = float(pl_decay)
        if not (np.isfinite(blur_init_sigma) and blur_init_sigma >= 0):
            raise ValueError(f"blur_init_sigma must be a finite number >= 0, got {blur_init_sigma}")
        if not (np.isfinite(blur_fade_kimg) and blur_fade_kimg >= 0):
            raise ValueError(f"blur_fade_kimg must be a finite number >= 0, got {blur_fade_kimg}")
        self.blur_init_sigma = float(blur_init_sigma)
        self.blur_fade_kimg = float(blur_fade_kimg)
        self.pl_mean = torch.zeros([], device=device)
        self._loss_Dgen: torch.Tensor | None = None  # Last Dmain fake-image loss, for Loss/D/loss.

    # ------------------------------------------------------------------------
    # Network evaluation.

    def run_G(self, z: torch.Tensor, c: torch.Tensor, update_emas: bool = False):
        """Map z [N, z_dim] and c [N, c_dim] to images [N, C, H, W], with style mixing."""
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0:
            with torch.autograd.profiler.record_function("style_mixing"):
                num_ws = ws.shape[1]
                cutoff = int(torch.randint(1, num_ws, [], device="cpu"))
                if float(torch.rand([], device="cpu")) >= self.style_mixing_prob:
                    cutoff = num_ws
                if cutoff < num_ws:
                    ws_mix = self.G.mapping(torch.randn_like(z), c, update_emas=False)
                    ws = torch.cat([ws[:, :cutoff], ws_mix[:, cutoff:]], dim=1)
        img = self.G.synthesis(ws, update_emas=update_emas)
        return img, ws

    def compiled_modules(self) -> list[torch.nn.Module]:
        return [self.G.mapping, self.G.synthesis, self.D]

    def blur_sigma(self, cur_nimg: int) -> float:
        """Blur strength at `cur_nimg` images: blur_init_sigma fading linearly to 0."""
        if self.blur_fade_kimg > 0:
            fade = max(1 - cur_nimg / (self.blur_fade_kimg * 1e3), 0.0)
            return fade * self.blur_init_sigma
        return 0.0

    def run_D(
        self, img: torch.Tensor, c: torch.Tensor, blur_sigma: float = 0, update_emas: bool = False
    ):
        """Return D's logits [N, 1] for images [N, C, H, W], blurred and then augmented when
        those are on."""
        img = self.augment(blur_images(img, blur_sigma))
        return self.D(img, c, update_emas=update_emas)

    # ------------------------------------------------------------------------
    # Phases.

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        """Run one phase on one minibatch round and call backward() on its weighted loss.

        `gain` multiplies the loss: the regularization interval for lazy phases, else 1.
        """
        if phase not in PHASES:
            raise ValueError(f"Unknown loss phase {phase!r}; expected one of {PHASES}")
        if self.pl_weight == 0 and phase == "Greg":
            return
        if self.pl_weight == 0:
            phase = {"Gboth": "Gmain"}.get(phase, phase)
        if self.r1_gamma == 0:
            phase = {"Dreg": "", "Dboth": "Dmain"}.get(phase, phase)

        blur_sigma = self.blur_sigma(cur_nimg)
        if phase in ("Gmain", "Gboth"):
            self._accumulate_Gmain(gen_z, gen_c, gain, blur_sigma)
        if phase in ("Greg", "Gboth"):
            with self.eager():  # Path length needs gradients of gradients.
                self._accumulate_Greg(gen_z, gen_c, gain)
        if phase in ("Dmain", "Dboth"):
            self._accumulate_Dgen(gen_z, gen_c, gain, blur_sigma)
        if phase in ("Dmain", "Dreg", "Dboth"):
            # R1 (Dreg, Dboth) needs gradients of gradients.
            with self.eager() if phase != "Dmain" else contextlib.nullcontext():
                self._accumulate_Dreal(phase, real_img, real_c, gain, blur_sigma)

    def _accumulate_Gmain(self, gen_z, gen_c, gain, blur_sigma):
        # Non-saturating logistic loss: -log(sigmoid(D(G(z)))).
        with torch.autograd.profiler.record_function("Gmain_forward"):
            gen_img, _gen_ws = self.run_G(gen_z, gen_c)
            gen_logits = self.run_D(gen_img, gen_c, blur_sigma=blur_sigma)
            training_stats.report("Loss/scores/fake", gen_logits)
            training_stats.report("Loss/signs/fake", gen_logits.sign())
            loss_Gmain = F.softplus(-gen_logits)
            training_stats.report("Loss/G/loss", loss_Gmain)
        with torch.autograd.profiler.record_function("Gmain_backward"):
            self.backward(loss_Gmain, gain)

    def _accumulate_Greg(self, gen_z, gen_c, gain):
        # Path-length regularization: keep ||J_w^T y|| close to its running mean, where y is
        # Gaussian noise scaled so the expectation does not depend on the image resolution.
        with torch.autograd.profiler.record_function("Gpl_forward"):
            batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
            gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size])
            pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
            # PyTorch's engine computes only the gradients that this call requests, so it
            # computes no weight gradients here (a test checks it). NVIDIA's code needs its own
            # no_weight_gradients() switch for that. The weights get theirs in backward().
            (pl_grads,) = torch.autograd.grad(
                outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws], create_graph=True
            )
            pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
            pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
            self.pl_mean.copy_(pl_mean.detach())
            pl_penalty = (pl_lengths - pl_mean).square()
            training_stats.report("Loss/pl_penalty", pl_penalty)
            loss_Gpl = pl_penalty * self.pl_weight
            training_stats.report("Loss/G/reg", loss_Gpl)
        with torch.autograd.profiler.record_function("Gpl_backward"):
            self.backward(loss_Gpl, gain)

    def _accumulate_Dgen(self, gen_z, gen_c, gain, blur_sigma):
        # Push D(G(z)) down: softplus(D(G(z))). update_emas lets G track w_avg here only.
        with torch.autograd.profiler.record_function("Dgen_forward"):
            gen_img, _gen_ws = self.run_G(gen_z, gen_c, update_emas=True)
            gen_logits = self.run_D(
                gen_img.detach(), gen_c, blur_sigma=blur_sigma, update_emas=True
            )
            training_stats.report("Loss/scores/fake", gen_logits)
            training_stats.report("Loss/signs/fake", gen_logits.sign())
            loss_Dgen = F.softplus(gen_logits)
            self._loss_Dgen = loss_Dgen.detach()
        with torch.autograd.profiler.record_function("Dgen_backward"):
            self.backward(loss_Dgen, gain)

    def _accumulate_Dreal(self, phase, real_img, real_c, gain, blur_sigma):
        # Push D(x) up: softplus(-D(x)); R1 penalizes ||grad_x D(x)||^2 on real images.
        name = {"Dmain": "Dreal", "Dreg": "Dr1", "Dboth": "Dreal_Dr1"}[phase]
        with torch.autograd.profiler.record_function(name + "_forward"):
            real_img_tmp = real_img.detach().requires_grad_(phase in ("Dreg", "Dboth"))
            real_logits = self.run_D(real_img_tmp, real_c, blur_sigma=blur_sigma)
            training_stats.report("Loss/scores/real", real_logits)
            training_stats.report("Loss/signs/real", real_logits.sign())

            loss_Dreal = torch.zeros([], device=real_logits.device)
            if phase in ("Dmain", "Dboth"):
                loss_Dreal = F.softplus(-real_logits)
                loss_Dgen = self._loss_Dgen
                if loss_Dgen is None or loss_Dgen.shape != loss_Dreal.shape:
                    loss_Dgen = torch.zeros_like(loss_Dreal)
                training_stats.report("Loss/D/loss", loss_Dgen + loss_Dreal)

            loss_Dr1 = torch.zeros([], device=real_logits.device)
            if phase in ("Dreg", "Dboth"):
                (r1_grads,) = torch.autograd.grad(
                    outputs=[real_logits.sum()], inputs=[real_img_tmp], create_graph=True
                )
                r1_penalty = r1_grads.square().sum([1, 2, 3])
                loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
                training_stats.report("Loss/r1_penalty", r1_penalty)
                training_stats.report("Loss/D/reg", loss_Dr1)
        with torch.autograd.profiler.record_function(name + "_backward"):
            self.backward(loss_Dreal + loss_Dr1, gain)


class BigGANLoss(Loss):
    """Hinge loss (Lim & Ye, "Geometric GAN", 2017; Miyato et al., "Spectral Normalization for
    Generative Adversarial Networks", ICLR 2018), as BigGAN uses it.

    D minimizes mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))) and G minimizes -mean(D(G(z))).
    The networks are called whole, as G(z, c) and D(img, c), because a BigGAN generator has no
    mapping and synthesis split. There is no regularizer, so Greg and Dreg do nothing, and
    Gboth and Dboth run Gmain and Dmain.
    """

    def run_G(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Map z [N, z_dim] and c [N, c_dim] to images [N, C, H, W]."""
        return self.G(z, c)

    def run_D(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Return D's logits [N, 1] for images [N, C, H, W], augmented when a pipe is set."""
        return self.D(self.augment(img), c)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        """Run one phase on one minibatch round and call backward() on its loss times `gain`."""
        if phase not in PHASES:
            raise ValueError(f"Unknown loss phase {phase!r}; expected one of {PHASES}")
        if phase in ("Gmain", "Gboth"):
            self._accumulate_Gmain(gen_z, gen_c, gain)
        if phase in ("Dmain", "Dboth"):
            loss_Dgen = self._accumulate_Dgen(gen_z, gen_c, gain)
            self._accumulate_Dreal(real_img, real_c, gain, loss_Dgen)

    def _accumulate_Gmain(self, gen_z, gen_c, gain):
        # G raises D(G(z)) without a margin: -D(G(z)).
        with torch.autograd.profiler.record_function("Gmain_forward"):
            gen_logits = self.run_D(self.run_G(gen_z, gen_c), gen_c)
            training_stats.report("Loss/scores/fake", gen_logits)
            training_stats.report("Loss/signs/fake", gen_logits.sign())
            loss_Gmain = -gen_logits
            training_stats.report("Loss/G/loss", loss_Gmain)
        with torch.autograd.profiler.record_function("Gmain_backward"):
            self.backward(loss_Gmain, gain)

    def _accumulate_Dgen(self, gen_z, gen_c, gain) -> torch.Tensor:
        # Push D(G(z)) below -1: relu(1 + D(G(z))). Scores already below -1 get no gradient.
        with torch.autograd.profiler.record_function("Dgen_forward"):
            with torch.no_grad():
                gen_img = self.run_G(gen_z, gen_c)
            gen_logits = self.run_D(gen_img, gen_c)
            training_stats.report("Loss/scores/fake", gen_logits)
            training_stats.report("Loss/signs/fake", gen_logits.sign())
            loss_Dgen = F.relu(1 + gen_logits)
        with torch.autograd.profiler.record_function("Dgen_backward"):
            self.backward(loss_Dgen, gain)
        return loss_Dgen.detach()

    def _accumulate_Dreal(self, real_img, real_c, gain, loss_Dgen):
        # Push D(x) above 1: relu(1 - D(x)). Scores already above 1 get no gradient.
        with torch.autograd.profiler.record_function("Dreal_forward"):
            real_logits = self.run_D(real_img.detach(), real_c)
            training_stats.report("Loss/scores/real", real_logits)
            training_stats.report("Loss/signs/real", real_logits.sign())
            loss_Dreal = F.relu(1 - real_logits)
            training_stats.report("Loss/D/loss", add_per_image(loss_Dreal.detach(), loss_Dgen))
        with torch.autograd.profiler.record_function("Dreal_backward"):
            self.backward(loss_Dreal, gain)


def add_per_image(loss_real: torch.Tensor, loss_fake: torch.Tensor) -> torch.Tensor:
    """Add the real- and fake-image losses [N, 1] of one round image by image, so the mean of
    the sum is the D loss. Unequal batch sizes add the fake-image mean to each real loss."""
    if loss_fake.shape != loss_real.shape:
        loss_fake = loss_fake.mean()
    return loss_real + loss_fake


def blur_kernel(sigma: float) -> torch.Tensor | None:
    """Return the 1D blur kernel for `sigma`, or None when it would be a single tap.

    The taps are 2 ** -(x / sigma) ** 2 for |x| <= floor(3 * sigma), normalized to sum 1: the
    StyleGAN3 training blur, a Gaussian whose standard deviation is sigma / sqrt(2 ln 2),
    about 0.85 * sigma.
    """
    radius = int(np.floor(sigma * 3))
    if radius <= 0:
        return None
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp2(-((x / sigma) ** 2))
    return (taps / taps.sum()).float()


def blur_images(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur images [N, C, H, W] separably with blur_kernel(sigma), keeping their size."""
    taps = blur_kernel(sigma)
    if taps is None:
        return img
    with torch.autograd.profiler.record_function("blur"):
        return upfirdn2d.filter2d(img, taps.to(img.device))
