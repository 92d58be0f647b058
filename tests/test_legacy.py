"""training.legacy: NVIDIA-format network pickles load into our networks with NVIDIA's outputs,
no global outside the allow-list is ever resolved, bad files fail with named errors, and
gen_images.py, calc_metrics.py and train.py --resume accept the pickles."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import calc_metrics
import dnnlib
import gen_images
import train
from training import legacy
from training import snapshot as snapshot_lib
from training.augment import AugmentPipe
from training.networks_stylegan2 import Generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "nvidia-pickles")
NAMES = ["sg2_rgb32", "sg2_gray32_cond10", "sg3t_rgb32", "sg3r_rgb32"]
ATOL = 1e-4  # float32 on CPU; a structural difference gives errors of 1e-2 and more.


def fixture_path(name: str) -> str:
    return os.path.join(FIXTURES, f"{name}.pkl")


@pytest.fixture(scope="module")
def loaded():
    return {name: legacy.load_network_pkl(fixture_path(name)) for name in NAMES}


# ----------------------------------------------------------------------------
# Output parity with NVIDIA's code, whose outputs are stored next to each pickle.


def max_error(actual: torch.Tensor, expected: np.ndarray) -> float:
    assert tuple(actual.shape) == expected.shape
    return float(np.abs(actual.detach().numpy() - expected).max())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("net", ["G", "G_ema"])
def test_generator_parity(loaded, name, net):
    G = loaded[name][net]
    expected = np.load(os.path.join(FIXTURES, f"{name}-expected.npz"))
    z, c = torch.from_numpy(expected["z"]), torch.from_numpy(expected["c"])
    for suffix, psi in [("", 1), ("_trunc07", 0.7)]:
        ws = G.mapping(z, c, truncation_psi=psi)
        assert max_error(ws, expected[f"{net}_ws{suffix}"]) < ATOL, f"ws psi={psi}"
        img = G.synthesis(ws, noise_mode="const", force_fp32=True)
        assert max_error(img, expected[f"{net}_img{suffix}"]) < ATOL, f"img psi={psi}"


@pytest.mark.parametrize("name", ["sg2_rgb32", "sg2_gray32_cond10"])
def test_generator_parity_without_noise(loaded, name):
    expected = np.load(os.path.join(FIXTURES, f"{name}-expected.npz"))
    ws = torch.from_numpy(expected["G_ws"])
    img = loaded[name].G.synthesis(ws, noise_mode="none", force_fp32=True)
    assert max_error(img, expected["G_img_noise_none"]) < ATOL
    # The noise must matter, or the check above could not tell the modes apart.
    assert np.abs(expected["G_img_noise_none"] - expected["G_img"]).max() > 100 * ATOL


@pytest.mark.parametrize("name", NAMES)
def test_discriminator_parity(loaded, name):
    expected = np.load(os.path.join(FIXTURES, f"{name}-expected.npz"))
    img, c = torch.from_numpy(expected["G_img"]), torch.from_numpy(expected["c"])
    logits = loaded[name].D(img, c, force_fp32=True)
    assert max_error(logits, expected["D_logits_on_G_img"]) < ATOL


def test_loaded_fields(loaded):
    data = loaded["sg3r_rgb32"]
    assert data.format == legacy.FORMAT_NVIDIA
    assert data.augment_pipe is None
    assert data.training_set_kwargs is None
    assert type(data.G).__module__ == "training.networks_stylegan3"
    assert type(data.D).__module__ == "training.networks_stylegan2"
    assert data.G.init_kwargs.use_radial_filters is True
    assert data.G.init_kwargs.conv_kernel == 1
    assert not data.G_ema.training
    assert not any(p.requires_grad for p in data.G_ema.parameters())
    assert type(loaded["sg2_rgb32"].G).__module__ == "training.networks_stylegan2"


def test_parameter_counts_match_fixture_table(loaded):
    summary = {"sg2_rgb32": (329651, 288993), "sg3r_rgb32": (455765, 288993)}
    for name, (g_params, d_params) in summary.items():
        assert sum(p.numel() for p in loaded[name].G.parameters()) == g_params
        assert sum(p.numel() for p in loaded[name].D.parameters()) == d_params


def test_own_snapshot_and_file_objects(tmp_path, loaded):
    path = str(tmp_path / "network-snapshot-000000.pkl")
    G = loaded["sg2_rgb32"].G
    snapshot_lib.save_network_snapshot(path, {"G": G, "G_ema": G}, progress={"cur_nimg": 7})
    ours = legacy.load_network_pkl(path)
    assert ours.format == legacy.FORMAT_OURS
    assert ours.progress["cur_nimg"] == 7
    assert ours.D is None
    assert torch.equal(ours.G.synthesis.b4.const, G.synthesis.b4.const)
    with open(path, "rb") as f:
        assert legacy.load_network_pkl(f).progress["cur_nimg"] == 7
    with open(fixture_path("sg2_rgb32"), "rb") as f:
        from_file = legacy.load_network_pkl(f)
    assert torch.equal(from_file.G.mapping.w_avg, G.mapping.w_avg)


def test_snapshot_loader_dispatches_nvidia_pickles():
    data = snapshot_lib.load_network_snapshot(fixture_path("sg3t_rgb32"))
    assert data.format == legacy.FORMAT_NVIDIA
    assert data.G_ema is not None


# ----------------------------------------------------------------------------
# Writing NVIDIA-format pickles for the tests: records read with the restricted unpickler,
# changed, and written back through a stand-in of the torch_utils.persistence module.


def _reconstruct_persistent_obj(meta):
    raise AssertionError("the stand-in reconstruction function must never run")


@pytest.fixture
def persistence(monkeypatch):
    module = types.ModuleType("torch_utils.persistence")
    _reconstruct_persistent_obj.__module__ = module.__name__
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


class NvidiaPickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, legacy.PersistentRecord):
            meta = dict(type="class", version=6, module_src="# omitted", state=obj.state)
            meta["class_name"] = obj.class_name
            return _reconstruct_persistent_obj, (meta,)
        return NotImplemented


def read_records(name: str) -> dict:
    with open(fixture_path(name), "rb") as f:
        return legacy.unpickle_restricted(f, name)


def write_pickle(path, data) -> str:
    with open(path, "wb") as f:
        NvidiaPickler(f, protocol=4).dump(data)
    return str(path)


class Reduce:
    """An object that unpickles as func(*args)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_rewritten_fixture_loads_identically(tmp_path, persistence, loaded):
    path = write_pickle(tmp_path / "copy.pkl", read_records("sg2_rgb32"))
    data = legacy.load_network_pkl(path)
    for key, value in loaded["sg2_rgb32"].G.state_dict().items():
        assert torch.equal(data.G.state_dict()[key], value), key


# ----------------------------------------------------------------------------
# Safety: globals outside the allow-list are rejected before anything runs.

EVIL_CALLS = [
    (os.system, "system"),
    (eval, "builtins.eval"),
    (subprocess.Popen, "subprocess.Popen"),
]


def evil_payload(func, marker):
    if func is eval:
        return Reduce(eval, f"open({str(marker)!r}, 'w').close()")
    if func is subprocess.Popen:
        return Reduce(subprocess.Popen, ["touch", str(marker)])
    return Reduce(os.system, f"touch {marker}")


@pytest.mark.parametrize("func, global_name", EVIL_CALLS, ids=["os.system", "eval", "Popen"])
def test_top_level_global_rejected(tmp_path, persistence, func, global_name):
    marker = tmp_path / "ran"
    data = read_records("sg2_rgb32")
    data["training_set_kwargs"] = evil_payload(func, marker)
    path = write_pickle(tmp_path / "evil.pkl", data)
    with pytest.raises(legacy.LegacyPickleError) as info:
        legacy.load_network_pkl(path)
    assert global_name in str(info.value)
    assert "evil.pkl" in str(info.value)
    assert not marker.exists()


def test_global_in_nested_state_rejected(tmp_path, persistence):
    marker = tmp_path / "ran"
    data = read_records("sg2_rgb32")
    block = data["G"].state["_modules"]["synthesis"].state["_modules"]["b8"]
    block.state["architecture"] = evil_payload(os.system, marker)
    path = write_pickle(tmp_path / "nested.pkl", data)
    with pytest.raises(legacy.LegacyPickleError, match="system"):
        legacy.load_network_pkl(path)
    assert not marker.exists()


def test_module_source_never_executed(tmp_path, persistence):
    marker = tmp_path / "ran"
    data = read_records("sg2_rgb32")
    G = data["G"]
    source = f"open({str(marker)!r}, 'w').close()"

    class SourcePickler(NvidiaPickler):
        def reducer_override(self, obj):
            result = super().reducer_override(obj)
            if result is not NotImplemented:
                result[1][0]["module_src"] = source
            return result

    path = tmp_path / "src.pkl"
    with open(path, "wb") as f:
        SourcePickler(f, protocol=4).dump({"G": G, "D": None, "G_ema": G})
    assert legacy.load_network_pkl(str(path)).G is not None
    assert not marker.exists()


def test_persistent_id_rejected(tmp_path):
    class IdPickler(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage" if obj == "x" else None

    buffer = io.BytesIO()
    IdPickler(buffer).dump({"marker": "torch_utils.persistence", "G": "x"})
    path = tmp_path / "pid.pkl"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(legacy.LegacyPickleError, match="persistent id"):
        legacy.load_network_pkl(str(path))


def test_dataset_class_from_file_rejected(tmp_path, persistence):
    data = read_records("sg2_rgb32")
    data["training_set_kwargs"] = {"class_name": "subprocess.run", "args": ["true"]}
    path = write_pickle(tmp_path / "data.pkl", data)
    with pytest.raises(legacy.LegacyPickleError, match="'subprocess.run'"):
        legacy.load_network_pkl(path)


# ----------------------------------------------------------------------------
# Bad files and unsupported content.


def test_truncated_pickle(tmp_path):
    content = open(fixture_path("sg2_rgb32"), "rb").read()
    path = tmp_path / "cut.pkl"
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(legacy.LegacyPickleError, match="truncated") as info:
        legacy.load_network_pkl(str(path))
    assert "cut.pkl" in str(info.value)


def test_html_saved_as_pkl(tmp_path):
    path = tmp_path / "page.pkl"
    path.write_bytes(b"<!DOCTYPE html><html><body>torch_utils.persistence</body></html>")
    with pytest.raises(snapshot_lib.SnapshotError, match="HTML") as info:
        legacy.load_network_pkl(str(path))
    assert "page.pkl" in str(info.value)


def test_unknown_top_level_class(tmp_path, persistence):
    data = read_records("sg2_rgb32")
    data["D"] = legacy.PersistentRecord("ProjectedDiscriminator", data["D"].state)
    path = write_pickle(tmp_path / "unknown.pkl", data)
    with pytest.raises(legacy.LegacyPickleError, match="'ProjectedDiscriminator'") as info:
        legacy.load_network_pkl(path)
    assert "unknown.pkl" in str(info.value)


def test_unknown_nested_class(tmp_path, persistence):
    data = read_records("sg2_rgb32")
    modules = data["G"].state["_modules"]
    modules["mapping"] = legacy.PersistentRecord("SirenMapping", modules["mapping"].state)
    path = write_pickle(tmp_path / "nested.pkl", data)
    with pytest.raises(legacy.LegacyPickleError, match="'SirenMapping'"):
        legacy.load_network_pkl(path)


def test_unsupported_kwargs_named(tmp_path, persistence):
    data = read_records("sg2_rgb32")
    data["G"].state["_init_kwargs"]["use_siren"] = True
    data["D"].state["_init_kwargs"]["epilogue_kwargs"]["mbstd_mode"] = "max"
    path = write_pickle(tmp_path / "kwargs.pkl", data)
    with pytest.raises(legacy.LegacyPickleError, match="use_siren=True") as info:
        legacy.load_network_pkl(path)
    data["G"].state["_init_kwargs"].pop("use_siren")
    path = write_pickle(tmp_path / "kwargs.pkl", data)
    with pytest.raises(legacy.LegacyPickleError, match="epilogue_kwargs.mbstd_mode") as info:
        legacy.load_network_pkl(path)
    assert "training.networks_stylegan2.Discriminator" in str(info.value)


def test_missing_and_left_over_tensors_listed(tmp_path, persistence):
    data = read_records("sg2_rgb32")
    conv = data["G"].state["_modules"]["synthesis"].state["_modules"]["b8"]
    conv = conv.state["_modules"]["conv1"]
    del conv.state["_buffers"]["noise_const"]
    conv.state["_parameters"]["extra_gain"] = torch.ones([])
    path = write_pickle(tmp_path / "tensors.pkl", data)
    with pytest.raises(legacy.LegacyPickleError) as info:
        legacy.load_network_pkl(path)
    message = str(info.value)
    assert "missing from the pickle: synthesis.b8.conv1.noise_const" in message
    assert "not used here: synthesis.b8.conv1.extra_gain" in message


def test_shape_mismatch_listed(tmp_path, persistence):
    data = read_records("sg2_rgb32")
    data["G"].state["_modules"]["synthesis"].state["_modules"]["b4"].state["_parameters"][
        "const"
    ] = torch.zeros([63, 4, 4])
    path = write_pickle(tmp_path / "shape.pkl", data)
    with pytest.raises(legacy.LegacyPickleError, match=r"synthesis.b4.const: \(63, 4, 4\)"):
        legacy.load_network_pkl(path)


def test_ada_style_kwargs_and_easydicts(tmp_path, persistence, loaded):
    """StyleGAN2-ADA-PyTorch nests synthesis arguments in synthesis_kwargs, and its training
    script passes dnnlib EasyDicts."""
    data = read_records("sg2_rgb32")
    init = data["G"].state["_init_kwargs"]
    synthesis = {k: init.pop(k) for k in ["channel_base", "channel_max", "num_fp16_res"]}
    init.pop("fused_modconv_default")
    init["synthesis_kwargs"] = dnnlib.EasyDict(synthesis, conv_clamp=init.pop("conv_clamp"))
    init["mapping_kwargs"] = dnnlib.EasyDict(init["mapping_kwargs"])
    path = write_pickle(tmp_path / "ada.pkl", data)
    assert b"dnnlib.util" in open(path, "rb").read()
    G = legacy.load_network_pkl(path).G
    assert G.init_kwargs.channel_base == 1024
    assert G.init_kwargs.fused_modconv_default == "inference_only"
    z = torch.randn([2, 128], generator=torch.Generator().manual_seed(0))
    expected = loaded["sg2_rgb32"].G(z, None, noise_mode="const")
    assert torch.equal(G(z, None, noise_mode="const"), expected)


def test_augment_pipe_loaded(tmp_path, persistence):
    data = read_records("sg2_rgb32")
    init_kwargs = dict(xflip=1, rotate90=1, xint=1, brightness=0.5)
    state = {
        "_init_args": (),
        "_init_kwargs": init_kwargs,
        "_parameters": {},
        "_buffers": {
            "p": torch.tensor(0.3),
            "Hz_geom": torch.zeros([12]),
            "Hz_fbank": torch.zeros([4, 48]),
        },
        "_modules": {},
    }
    data["augment_pipe"] = legacy.PersistentRecord("AugmentPipe", state)
    path = write_pickle(tmp_path / "aug.pkl", data)
    pipe = legacy.load_network_pkl(path).augment_pipe
    assert isinstance(pipe, AugmentPipe)
    assert float(pipe.p) == pytest.approx(0.3)
    assert pipe.brightness == 0.5
    assert pipe.xint == 1
    assert pipe.scale == 0


def test_non_network_pickle_rejected(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"note": "torch_utils.persistence"}))
    with pytest.raises(legacy.LegacyPickleError, match="none of the networks"):
        legacy.load_network_pkl(str(path))


# ----------------------------------------------------------------------------
# The command-line tools.


def test_gen_images_nvidia_pickle(tmp_path):
    outdir = tmp_path / "out"
    args = [f"--network={fixture_path('sg3t_rgb32')}", "--seeds=0-1", f"--outdir={outdir}"]
    result = CliRunner().invoke(gen_images.main, args + ["--device=cpu", "--rotate=15"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(outdir)) == ["seed0000.png", "seed0001.png"]


def test_gen_images_truncated_pickle(tmp_path):
    content = open(fixture_path("sg2_rgb32"), "rb").read()
    path = tmp_path / "cut.pkl"
    path.write_bytes(content[:1000])
    args = [f"--network={path}", "--seeds=0", f"--outdir={tmp_path / 'out'}", "--device=cpu"]
    result = CliRunner().invoke(gen_images.main, args)
    assert result.exit_code == 1
    assert "truncated" in result.output
    assert str(path) in result.output


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_calc_metrics_nvidia_pickle(tmp_path, small_data):
    class MeanDetector(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    detector = str(tmp_path / "detector.pt")
    torch.jit.script(MeanDetector()).save(detector)
    network = shutil.copy(fixture_path("sg2_gray32_cond10"), tmp_path / "net.pkl")
    args = ["--network", str(network), "--metrics", "fid100_full", "--data", small_data]
    args += ["--detector", detector, "--device", "cpu", "--verbose", "false", "--no-cache"]
    result = CliRunner().invoke(calc_metrics.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "metric-fid100_full.jsonl").read_text())
    assert record["num_gen"] == 100
    assert np.isfinite(record["results"]["fid100_full"])


def run_train_cli(tmp_path, small_data, pkl, *extra):
    args = [
        f"--outdir={tmp_path / 'runs'}", "--cfg=stylegan2", f"--data={small_data}", "--gpus=1",
        "--batch=8", "--gamma=0.1", "--workers=0", "--device=cpu", "--metrics=none",
        "--kimg=0.016", "--tick=0.008", "--snap=2", f"--resume={pkl}", *extra,
    ]  # fmt: skip
    return CliRunner().invoke(train.main, args)


def test_train_resume_wrong_cfg(tmp_path, small_data):
    result = run_train_cli(tmp_path, small_data, fixture_path("sg3t_rgb32"), "--cond=1")
    assert result.exit_code == 1
    assert "training.networks_stylegan3.Generator" in result.output
    assert "--cfg=stylegan2" in result.output
    assert not (tmp_path / "runs").exists()


def test_train_resume_needs_cond(tmp_path, small_data):
    result = run_train_cli(tmp_path, small_data, fixture_path("sg2_gray32_cond10"))
    assert result.exit_code == 1
    assert "--cond=1" in result.output


def test_train_resume_truncated(tmp_path, small_data):
    content = open(fixture_path("sg2_gray32_cond10"), "rb").read()
    path = tmp_path / "cut.pkl"
    path.write_bytes(content[: len(content) // 3])
    result = run_train_cli(tmp_path, small_data, path, "--cond=1")
    assert result.exit_code == 1
    assert f"--resume: {path}" in result.output
    assert "truncated" in result.output


def test_train_resume_from_nvidia_pickle(tmp_path, small_data):
    pkl = fixture_path("sg2_gray32_cond10")
    args = [
        sys.executable, os.path.join(ROOT, "train.py"), f"--outdir={tmp_path}", "--cfg=stylegan2",
        f"--data={small_data}", "--cond=1", "--gpus=1", "--batch=8", "--gamma=0.1",
        "--workers=0", "--device=cpu", "--metrics=none", "--kimg=0.032", "--tick=0.016",
        "--snap=2", "--seed=1", "--freezed=1", f"--resume={pkl}",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["G.channel_base", "1024", "from"] for line in lines)
    assert any(line.split()[:2] == ["G.z_dim", "128"] for line in lines)
    freeze_line = ["D.block_kwargs.freeze_layers", "1", "from", "--freezed"]
    assert any(line.split() == freeze_line for line in lines)
    assert "training counts from 0 kimg and both optimizers start fresh" in result.stdout
    assert "Resumed at kimg 0.0" in result.stdout

    (run_dir,) = [os.path.join(tmp_path, n) for n in os.listdir(tmp_path)]
    snapshot = snapshot_lib.read_snapshot(snapshot_lib.list_snapshots(run_dir)[0])
    assert snapshot["progress"]["cur_nimg"] == 32
    options = json.load(open(os.path.join(run_dir, "training_options.json")))
    assert options["G_kwargs"]["z_dim"] == 128
    assert options["D_kwargs"]["block_kwargs"]["freeze_layers"] == 1

    # Four optimizer steps move the weights far less than a fresh initialization would.
    original = legacy.load_network_pkl(pkl).G.state_dict()
    trained = snapshot["G"]["state_dict"]
    weight = "synthesis.b16.conv0.weight"
    assert (trained[weight] - original[weight]).abs().max() < 0.1
    fresh = Generator(**snapshot["G"]["init_kwargs"]).state_dict()[weight]
    assert (fresh - original[weight]).abs().max() > 1


# ----------------------------------------------------------------------------
# Crafted values that only use allowed globals.


class Reduces:
    """An object that pickles as reduce_value (a (callable, args[, state]) tuple)."""

    def __init__(self, *reduce_value):
        self.reduce_value = reduce_value

    def __reduce__(self):
        return self.reduce_value


def restricted_load(value):
    data = pickle.dumps(value, protocol=4)
    return legacy.unpickle_restricted(io.BytesIO(data), "crafted.pkl")


def test_numpy_void_dtype_rejected():
    # A void dtype whose pickled flags claim it contains pointers makes numpy's own scalar
    # reconstruction read memory outside the object.
    dtype = Reduces(np.dtype, ("V64", False, True), (3, "|", None, None, None, 64, 1, 0x05))
    with pytest.raises(legacy.LegacyPickleError, match="not a plain numeric type"):
        restricted_load(Reduces(np._core.multiarray.scalar, (dtype, b"A")))


def test_numpy_dtype_with_altered_flags_rejected():
    dtype = Reduces(np.dtype, ("f4", False, True), (3, "<", None, None, None, -1, -1, 0x05))
    with pytest.raises(legacy.LegacyPickleError, match="state"):
        restricted_load(dtype)


def test_numpy_scalar_needs_exact_bytes():
    dtype = Reduces(np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 0))
    assert restricted_load(Reduces(np._core.multiarray.scalar, (dtype, b"\0" * 8))) == 0.0
    with pytest.raises(legacy.LegacyPickleError, match="bytes"):
        restricted_load(Reduces(np._core.multiarray.scalar, (dtype, b"A")))


def test_numpy_array_round_trip_and_object_arrays_rejected():
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    loaded = legacy.to_plain_value(restricted_load(values))
    assert loaded == values.tolist()
    with pytest.raises(legacy.LegacyPickleError):
        restricted_load(np.array([object()], dtype=object))


def test_tensor_view_outside_storage_rejected():
    buffer = io.BytesIO()
    torch.save(torch.zeros(4).storage(), buffer)
    storage = Reduces(torch.storage._load_from_bytes, (buffer.getvalue(),))
    inside = Reduces(
        torch._utils._rebuild_tensor_v2, (storage, 0, (2, 2), (2, 1), False, OrderedDict())
    )
    assert restricted_load(inside).shape == (2, 2)
    outside = Reduces(
        torch._utils._rebuild_tensor_v2,
        (storage, 0, (1000, 1000), (1000, 1), False, OrderedDict()),
    )
    with pytest.raises(legacy.LegacyPickleError, match="reaches element"):
        restricted_load(outside)


def test_deeply_nested_arguments_rejected():
    value = []
    for _ in range(100):
        value = [value]
    with pytest.raises(legacy.LegacyPickleError, match="nested deeper"):
        legacy.to_plain_value(value)
