"""train.py --compile: the compiled forwards are swapped in only during phases, every network
traces into one graph (no graph breaks), and compiled phases give eager's gradients."""

import contextlib
import copy

import numpy as np
import pytest
import torch

from dmd_patch.networks import DMDBigGANDiscriminator, DMDDiscriminator
from torch_utils import compiling
from training import networks_biggan, networks_stylegan2, networks_stylegan3
from training.loss import StyleGAN2Loss

Z_DIM = 32


def tiny_stylegan2(res=16):
    G = networks_stylegan2.Generator(
        z_dim=Z_DIM, c_dim=0, w_dim=Z_DIM, img_resolution=res, img_channels=3,
        mapping_kwargs=dict(num_layers=2), channel_base=128, channel_max=16,
        fused_modconv_default="inference_only",
    )  # fmt: skip
    D = DMDDiscriminator(
        c_dim=0, img_resolution=res, img_channels=3, channel_base=128, channel_max=16
    )
    return G, D


def tiny_stylegan3(cfg):
    kwargs = dict(conv_kernel=1, use_radial_filters=True) if cfg == "stylegan3-r" else {}
    return networks_stylegan3.Generator(
        z_dim=Z_DIM, c_dim=0, w_dim=Z_DIM, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), channel_base=256, channel_max=16, num_layers=4,
        **kwargs,
    )  # fmt: skip


def graph_breaks(fn, *args, **kwargs):
    """Return (graph count, break reasons) of tracing fn(*args, **kwargs) with Dynamo."""
    explanation = torch._dynamo.explain(fn)(*args, **kwargs)
    torch._dynamo.reset()
    reasons = [reason.reason.splitlines()[0] for reason in explanation.break_reasons]
    return explanation.graph_count, reasons


# ----------------------------------------------------------------------------
# CompiledForwards.


def test_forwards_are_swapped_only_inside_active():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    compiled = compiling.CompiledForwards([a, b])
    class_forward = torch.nn.Linear.forward
    assert "forward" not in a.__dict__
    assert a.forward.__func__ is class_forward
    with compiled.active():
        assert a.forward is compiled.entries[0][1]
        assert b.forward is compiled.entries[1][1]
        with compiled.suspended():
            assert "forward" not in a.__dict__
            assert "forward" not in b.__dict__
        assert a.forward is compiled.entries[0][1]
    assert "forward" not in a.__dict__
    assert "forward" not in b.__dict__
    copy.deepcopy(a)  # A module holding a compiled function would fail to copy.


def test_forwards_are_restored_after_an_error():
    module = torch.nn.Linear(2, 2)
    compiled = compiling.CompiledForwards([module])
    with pytest.raises(KeyError), compiled.active():
        raise KeyError("phase failed")
    assert "forward" not in module.__dict__


def test_duplicate_modules_are_rejected():
    module = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="only once"):
        compiling.CompiledForwards([module, module])


def test_check_compiler_names_the_option(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.raises(RuntimeError) as info:
        compiling.check_compiler(torch.device("cpu"))
    message = str(info.value)
    assert "--compile=1" in message
    assert "C++ compiler" in message
    assert "InvalidCxxCompiler: No working C++ compiler found" in message
    assert "more detail" not in message


def test_check_compiler_rejects_wrong_values(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: lambda x: fn(x) + 1)
    with pytest.raises(RuntimeError, match="instead of"):
        compiling.check_compiler(torch.device("cpu"))


# ----------------------------------------------------------------------------
# Graph breaks. A break splits the compiled forward into pieces, and each piece after it is
# compiled again for every feature-map size it meets.


def test_stylegan2_and_dmd_discriminator_trace_without_breaks():
    torch.manual_seed(0)
    G, D = tiny_stylegan2()
    D.dmd_masker.step(retarded=True, nimg=0)  # Masks on, so their multiplication is traced.
    assert D.dmd_masked
    z, c = torch.randn(4, Z_DIM), torch.zeros(4, 0)
    ws = G.mapping(z, c)
    img = G.synthesis(ws)
    for fn, args in [(G.mapping, (z, c)), (G.synthesis, (ws,)), (D, (img, c))]:
        assert graph_breaks(fn.forward, *args) == (1, [])


@pytest.mark.parametrize("cfg", ["stylegan3-t", "stylegan3-r"])
def test_stylegan3_traces_without_breaks(cfg):
    torch.manual_seed(0)
    G = tiny_stylegan3(cfg)
    ws = G.mapping(torch.randn(2, Z_DIM), torch.zeros(2, 0))
    assert graph_breaks(G.synthesis.forward, ws) == (1, [])


def test_biggan_traces_without_breaks():
    torch.manual_seed(0)
    G = networks_biggan.Generator(z_dim=30, c_dim=0, w_dim=0, img_resolution=16,
                                  img_channels=3, ch=4)  # fmt: skip
    D = DMDBigGANDiscriminator(c_dim=0, img_resolution=16, img_channels=3, ch=4)
    z, c = torch.randn(4, 30), torch.zeros(4, 0)
    assert graph_breaks(G.forward, z, c) == (1, [])
    assert graph_breaks(D.forward, G(z, c), c) == (1, [])


# ----------------------------------------------------------------------------
# Compiled phases against eager ones.


def phase_gradients(loss, phase, batch, compiled):
    """Run one phase as the training loop does and return {parameter name: gradient}."""
    module = loss.G if phase.startswith("G") else loss.D
    module.requires_grad_(True)
    for p in module.parameters():
        p.grad = None
    loss.pl_mean.zero_()  # Greg updates the running mean; start both sides from the same one.
    torch.manual_seed(1)  # The same noise inputs and style-mixing draws on both sides.
    with compiled.active() if compiled is not None else contextlib.nullcontext():
        loss.accumulate_gradients(phase, *batch, gain=1, cur_nimg=0)
    module.requires_grad_(False)
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def test_compiled_phases_match_eager():
    compiling.check_compiler(torch.device("cpu"))
    torch.manual_seed(0)
    G, D = tiny_stylegan2()
    D.dmd_masker.step(retarded=True, nimg=0)
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, r1_gamma=1.0, pl_weight=2.0,
                         style_mixing_prob=0)  # fmt: skip
    generator = torch.Generator().manual_seed(2)
    batch = (
        torch.randn(4, 3, 16, 16, generator=generator),
        torch.zeros(4, 0),
        torch.randn(4, Z_DIM, generator=generator),
        torch.zeros(4, 0),
    )
    eager = {phase: phase_gradients(loss, phase, batch, None) for phase in loss_phases()}
    loss.use_compiled_forwards()
    for phase in loss_phases():
        grads = phase_gradients(loss, phase, batch, loss.compiled)
        assert grads.keys() == eager[phase].keys(), phase
        for name, grad in grads.items():
            np.testing.assert_allclose(
                grad.numpy(), eager[phase][name].numpy(), rtol=1e-4, atol=1e-6,
                err_msg=f"{phase} {name}",
            )  # fmt: skip

    # New mask patterns must reach the compiled D: no stale mask inside the compiled graph.
    D.dmd_masker.draw_patterns(nimg=8)
    img = batch[0]
    expected = D(img, batch[1])
    with loss.compiled.active():
        np.testing.assert_allclose(D(img, batch[1]).detach().numpy(), expected.detach().numpy(),
                                   rtol=1e-5, atol=1e-6)  # fmt: skip


def loss_phases():
    return ["Gmain", "Greg", "Dmain", "Dreg"]


# ----------------------------------------------------------------------------
# train.py --compile=1.


def test_train_py_runs_the_main_phases_compiled(tmp_path, small_data, monkeypatch):
    # aot_eager traces with Dynamo and AOTAutograd, as Inductor does, so double backward
    # through a compiled forward would raise here too, but it skips Inductor's C++ code
    # generation and the run takes seconds.
    from click.testing import CliRunner

    import train

    monkeypatch.setattr(compiling, "COMPILE_KWARGS", dict(backend="aot_eager", dynamic=False))
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    args = [
        f"--outdir={tmp_path}", f"--data={small_data}", "--cfg=stylegan2", "--gpus=1",
        "--batch=8", "--gamma=1", "--cbase=256", "--cmax=16", "--map-depth=2",
        "--metrics=none", "--device=cpu", "--workers=0", "--kimg=0.032", "--tick=0.016",
        "--snap=1", "--dmd=1", "--compile=1",
    ]  # fmt: skip
    result = CliRunner().invoke(train.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # Graphs of G.mapping, G.synthesis and D, for update_emas on and off. R1 and path length
    # add none, because they run eager: their double backward would have raised.
    assert counters["stats"]["unique_graphs"] >= 4
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "network-snapshot-000000.pkl").is_file()
    torch._dynamo.reset()


def test_broken_compiler_fails_before_run_dir(tmp_path, small_data, monkeypatch):
    from click.testing import CliRunner

    import train

    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    args = [
        f"--outdir={tmp_path / 'runs'}", f"--data={small_data}", "--cfg=stylegan2", "--gpus=1",
        "--batch=8", "--gamma=1", "--cbase=256", "--cmax=16", "--metrics=none",
        "--device=cpu", "--kimg=0.016", "--compile=1",
    ]  # fmt: skip
    result = CliRunner().invoke(train.main, args)
    assert result.exit_code == 1
    assert "--compile=1: torch.compile could not build" in result.output
    assert "InvalidCxxCompiler" in result.output
    assert not (tmp_path / "runs").exists()
