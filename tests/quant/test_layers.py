"""Quantized layers compute s_a * s_w * conv(x_int, w_int) + bias for every bitwidth and signedness."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fames.quant import QConv2d, QLinear, quantize_


def reference_conv(layer: QConv2d, x: torch.Tensor) -> torch.Tensor:
    x_int, s_a = layer.input_codes(x)
    w_int, s_w = layer.weight_codes()
    acc = F.conv2d(x_int.double(), w_int.double(), None, layer.stride, layer.padding, layer.dilation, layer.groups)
    y = acc * (s_a.double() * s_w.double()).view(1, -1, 1, 1)
    return y + layer.bias.double().view(1, -1, 1, 1) if layer.bias is not None else y


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("groups", [1, 2, 6])
def test_conv_equals_integer_computation(bits, signed, groups):
    conv = nn.Conv2d(6, 6, 3, padding=1, stride=2 if groups == 2 else 1, groups=groups)
    x = torch.randn(4, 6, 9, 9)
    x = x if signed else x.relu()
    layer = QConv2d.from_float(conv, bits, bits, a_signed=signed)
    layer.eval()
    y = layer(x)
    x_int, _ = layer.input_codes(x)
    w_int, _ = layer.weight_codes()
    lo_a, hi_a = layer.a_quant.code_range
    assert torch.equal(x_int, x_int.round()) and x_int.min() >= lo_a and x_int.max() <= hi_a
    assert w_int.min() >= -(2 ** (bits - 1)) and w_int.max() <= 2 ** (bits - 1) - 1
    assert (x_int < 0).any() == signed
    torch.testing.assert_close(y.double(), reference_conv(layer, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("signed", [False, True])
def test_linear_equals_integer_computation(bits, signed):
    lin = nn.Linear(20, 7)
    x = torch.randn(5, 20)
    x = x if signed else x.relu()
    layer = QLinear.from_float(lin, bits, bits, a_signed=signed).eval()
    x_int, s_a = layer.input_codes(x)
    w_int, s_w = layer.weight_codes()
    ref = (x_int.double() @ w_int.double().T) * (s_a.double() * s_w.double()) + lin.bias.double()
    torch.testing.assert_close(layer(x).double(), ref, rtol=1e-5, atol=1e-5)


def test_quantized_8bit_close_to_float():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))
    x = torch.rand(16, 3, 8, 8)
    ref = net(x)
    quantize_(net, {"*": 8}, calibration=x)
    err = (net(x) - ref).abs().max() / ref.abs().max()
    assert err < 0.05


def test_depthwise_and_per_tensor():
    conv = nn.Conv2d(4, 4, 3, groups=4, bias=False)
    layer = QConv2d.from_float(conv, 3, 5, per_channel=False).eval()
    x = torch.rand(2, 4, 6, 6)
    torch.testing.assert_close(layer(x).double(), reference_conv(layer, x), rtol=1e-5, atol=1e-5)
    assert layer.w_quant.step.dim() == 0


def test_operand_format_and_macs():
    layer = QConv2d.from_float(nn.Conv2d(2, 4, 3, padding=1, groups=2), 2, 4)
    layer(torch.rand(1, 2, 5, 5))
    assert layer.operand_format.name == "u4xs2"
    assert layer.macs_per_sample((5, 5)) == 5 * 5 * 4 * 1 * 9


def test_snap_to_integers_rounds_values_and_passes_gradients_straight_through():
    from fames.quant.layers import snap_to_integers

    exact = torch.tensor([-3.0, 0.0, 7.0, 812345.0])
    noisy = (exact + torch.tensor([1e-3, -2e-4, 3e-3, -1e-2])).requires_grad_(True)
    snapped = snap_to_integers(noisy)
    assert torch.equal(snapped.detach(), exact)
    (snapped * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert torch.equal(noisy.grad, torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_exact_math_is_a_no_op_off_cuda():
    from fames.quant.exact_math import exact_math

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with exact_math(torch.device("cpu")):
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("signed", [False, True])
def test_accumulators_without_graph_run_exactly_on_integer_units(bits, signed):
    """Without a graph on the CPU, a layer without a multiplier accumulates on int8 units (an exact u8 x s8
    conv, int8 matmuls) where its codes fit: bit-equal to the float64 conv/matmul of the codes; with a graph
    the float op runs and gradients flow. A linear layer where the int8 matmul is declined runs as a 1x1 u8 x s8
    conv while its weight codes fit the conv's weight range in one column (two cost more than the float op)."""
    from fames.emulation.api import integer_units
    from fames.emulation.functional import int8_available, int8_conv_available, int8_conv_weight_max

    cpu = torch.device("cpu")
    if not integer_units(cpu):
        pytest.skip("no exact int8 conv or matmul on this CPU build")
    torch.manual_seed(bits)
    conv = QConv2d.from_float(nn.Conv2d(6, 5, 3, padding=1), bits, bits, a_signed=signed).eval()
    lin = QLinear.from_float(nn.Linear(40, 7), bits, bits, a_signed=signed).eval()
    for layer, x, op, units in ((conv, torch.randn(3, 6, 8, 8) * 3, F.conv2d, int8_conv_available(cpu)),
                                (lin, torch.randn(4, 40) * 3, F.linear,
                                 int8_available(cpu) or int8_conv_weight_max(cpu) >= 2 ** (bits - 1))):
        x = x if signed else x.relu()
        with torch.no_grad():
            x_int, _ = layer.input_codes(x)
            w_int, _ = layer.weight_codes()
            got = layer.accumulate(x_int, w_int)
        kw = {"padding": 1} if op is F.conv2d else {}
        assert torch.equal(got.double(), op(x_int.double(), w_int.double(), **kw))
        assert layer.__dict__["_exact_emulator"]._plan[1].choice.int8 == units  # where this CPU has them
        y = layer(x)  # with a graph: the float op, and gradients reach the weights
        y.sum().backward()
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("make", [lambda: QConv2d.from_float(nn.Conv2d(3, 5, 3, padding=1), 4, 4),
                                  lambda: QLinear.from_float(nn.Linear(12, 5), 4, 4)])
def test_inference_forward_in_place_equals_the_graph_forward(make):
    """Without a graph the scale and bias are applied to the accumulator in place: the same values as the
    out-of-place forward that training uses, the input and parameters untouched, and gradients still flow."""
    layer = make().eval()
    x = torch.randn(2, 3, 6, 6).relu() if isinstance(layer, QConv2d) else torch.randn(4, 12).relu()
    with torch.no_grad():
        layer(x)  # the first call initialises the activation step
        x_before, params_before = x.clone(), [p.detach().clone() for p in layer.parameters()]
        fast = layer(x)
    slow = layer(x.requires_grad_())
    assert slow.requires_grad and torch.equal(fast, slow.detach())
    assert torch.equal(x.detach(), x_before)
    assert all(torch.equal(p, q) for p, q in zip(layer.parameters(), params_before, strict=True))
    slow.sum().backward()
    assert x.grad is not None and layer.weight.grad is not None


def test_logits_do_not_depend_on_the_accumulators_path(monkeypatch):
    """A model whose float work after a conv follows the memory layout (a global average pool) gives
    bit-identical outputs whether its convs accumulate on the int8 path (channels-last) or as float convs
    (NCHW): every conv accumulator leaves the layer channels-last. Without that the pooled means differ."""
    import fames.emulation.functional as fn
    from fames.emulation.api import integer_units

    cpu = torch.device("cpu")
    if not integer_units(cpu) or not fn.int8_conv_available(cpu):
        pytest.skip("no exact int8 conv on this CPU build: every conv takes the float path")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(64, 3, 14, 14)
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    quantize_(net.eval(), {"0": 4, "3": 4}, calibration=x)

    def pooled(int8: bool) -> torch.Tensor:
        monkeypatch.setattr(fn, "INT8_CONV", int8)
        monkeypatch.setattr(fn, "_INT8_CONV_OK", {})
        monkeypatch.setattr(fn, "_INT8_OK", {} if int8 else {"cpu": False})
        for layer in (net[0], net[3]):
            layer.__dict__.pop("_exact_emulator", None)
        with torch.no_grad():
            return net(x)

    on_int8, on_float = pooled(True), pooled(False)
    plan = net[3].__dict__["_exact_emulator"]._plan
    assert plan is None or not plan[1].choice.int8  # the last run took the float path
    assert torch.equal(on_int8, on_float)
