"""Quantized Conv2d / Linear that compute in the integer domain of DESIGN.md section 1.

``y = s_a * s_w[c] * sum_k mul(x_int, w_int) + bias``. With no multiplier attached, ``mul`` is exact
and the sum is an ordinary convolution of the codes; `fames.emulation` attaches an approximate
multiplier by setting ``layer.emulator`` (a callable ``(layer, x_int, w_int) -> accumulator``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fames.multipliers.formats import OperandFormat
from fames.quant.exact_math import exact_math
from fames.quant.lsq import LsqQuantizer, check_bits

Emulator = Callable[["QuantLayer", torch.Tensor, torch.Tensor], torch.Tensor]


def snap_to_integers(acc: torch.Tensor) -> torch.Tensor:
    """`acc` rounded to the nearest integers, with a straight-through gradient (training still works)."""
    return acc + (torch.round(acc) - acc).detach()


class QuantLayer(nn.Module):
    """Mixin holding the two quantizers and the integer-domain forward shared by conv and linear."""

    w_quant: LsqQuantizer
    a_quant: LsqQuantizer
    emulator: Emulator | None

    def _init_quant(self, w_bits: int, a_bits: int, a_signed: bool | None, per_channel: bool) -> None:
        check_bits(w_bits, "w_bits")
        check_bits(a_bits, "a_bits")
        out_channels = self.weight.shape[0]
        self.w_quant = LsqQuantizer(w_bits, signed=True, channels=out_channels if per_channel else None)
        self.a_quant = LsqQuantizer(a_bits, signed=a_signed)
        self.emulator = None
        self.multiplier_name: str | None = None

    @property
    def w_bits(self) -> int:
        return self.w_quant.bits

    @property
    def a_bits(self) -> int:
        return self.a_quant.bits

    @property
    def operand_format(self) -> OperandFormat:
        """The multiplier operand format this layer needs (activation x weight)."""
        return OperandFormat(self.a_bits, self.a_quant.signed, self.w_bits, True)

    def weight_codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w_int, s_w)``: integer weight codes (float dtype) and per-output-channel steps (shape (out,))."""
        w_int, s_w = self.w_quant(self.weight)
        return w_int, s_w.expand(self.weight.shape[0]) if s_w.dim() == 0 else s_w

    def input_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_int, s_a)``: integer activation codes (float dtype) and the scalar activation step."""
        return self.a_quant(x)

    def integer_op(self, x_int: torch.Tensor, w_int: torch.Tensor) -> torch.Tensor:
        """The exact integer accumulation ``sum_k x_k w_k`` (conv or matmul of codes)."""
        raise NotImplementedError

    def accumulate(self, x_int: torch.Tensor, w_int: torch.Tensor) -> torch.Tensor:
        """Accumulator with the attached multiplier (exact when no emulator is attached)."""
        if self.emulator is None:
            if x_int.device.type == "cpu" and not (torch.is_grad_enabled() and
                                                   (x_int.requires_grad or w_int.requires_grad)):
                from fames.emulation.api import exact_accumulator  # emulation imports this module

                return exact_accumulator(self, x_int, w_int)  # int8 convs / matmuls where the codes fit
            with exact_math(x_int.device):
                acc = self.integer_op(x_int, w_int)
            # GPU conv algorithms (Winograd, FFT) leave tiny errors on exact-integer sums; they would move
            # values across the next layer's rounding and clipping points (seen on an H100).
            return acc if acc.device.type == "cpu" else snap_to_integers(acc)
        return self.emulator(self, x_int, w_int)

    def _scale_shape(self, acc: torch.Tensor) -> tuple[int, ...]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_int, s_a = self.input_codes(x)
        w_int, s_w = self.weight_codes()
        acc = self.accumulate(x_int, w_int)
        scale = (s_a * s_w).reshape(self._scale_shape(acc))
        bias = None if self.bias is None else self.bias.reshape(self._scale_shape(acc))
        if _in_place_ok(acc, scale, bias):  # inference: the fresh accumulator becomes the output
            return acc.mul_(scale) if bias is None else acc.mul_(scale).add_(bias)
        y = acc * scale
        return y if bias is None else y + bias


def _in_place_ok(acc: torch.Tensor, *operands: torch.Tensor | None) -> bool:
    """Whether ``acc`` may be updated in place by `operands`: no autograd graph to keep, and the same dtype
    as the out-of-place result (so the values are the same; in place saves an allocation per layer)."""
    if torch.is_grad_enabled() and (acc.requires_grad or any(o is not None and o.requires_grad for o in operands)):
        return False
    return all(o is None or torch.result_type(acc, o) == acc.dtype for o in operands)


class QConv2d(QuantLayer, nn.Conv2d):
    """Quantized `nn.Conv2d` (grouped and depthwise included); build with `QConv2d.from_float`."""

    @classmethod
    def from_float(
        cls, conv: nn.Conv2d, w_bits: int, a_bits: int, a_signed: bool | None = None, per_channel: bool = True
    ) -> QConv2d:
        if conv.padding_mode != "zeros":
            raise ValueError(f"only zero padding is supported, got padding_mode={conv.padding_mode!r}")
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
            device=conv.weight.device, dtype=conv.weight.dtype,
        )
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        layer._init_quant(w_bits, a_bits, a_signed, per_channel)
        return layer

    def integer_op(self, x_int: torch.Tensor, w_int: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x_int, w_int, None, self.stride, self.padding, self.dilation, self.groups)

    def accumulate(self, x_int: torch.Tensor, w_int: torch.Tensor) -> torch.Tensor:
        """The accumulator, channels-last in inference whichever path computed it.

        The integer values are the same on every path (oneDNN's int8 conv, which gives channels-last, or a
        float conv, which gives NCHW), but float work after the layer whose order follows the memory layout
        (ResNet's global average pool) would round differently, so a model's logits would depend on which
        path each layer took: about 5e-3 on ResNet's, enough to turn a close call of the budget search on
        another kind of CPU. One layout makes them bit-identical (`tests/quant/test_layers.py`); channels-last
        is what the int8 path gives anyway, so there the call costs nothing. Training (autograd) is left
        as it was."""
        acc = super().accumulate(x_int, w_int)
        return acc if acc.requires_grad else acc.contiguous(memory_format=torch.channels_last)

    def _scale_shape(self, acc: torch.Tensor) -> tuple[int, ...]:
        return (1, -1, 1, 1)

    def macs_per_sample(self, input_hw: tuple[int, int]) -> int:
        """Multiplications per input sample for an input of spatial size `input_hw`."""
        h, w = input_hw
        kh, kw = self.kernel_size
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        return oh * ow * self.out_channels * (self.in_channels // self.groups) * kh * kw


class QLinear(QuantLayer, nn.Linear):
    """Quantized `nn.Linear`; build with `QLinear.from_float`."""

    @classmethod
    def from_float(
        cls, linear: nn.Linear, w_bits: int, a_bits: int, a_signed: bool | None = None, per_channel: bool = True
    ) -> QLinear:
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(linear.weight)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        layer._init_quant(w_bits, a_bits, a_signed, per_channel)
        return layer

    def integer_op(self, x_int: torch.Tensor, w_int: torch.Tensor) -> torch.Tensor:
        return F.linear(x_int, w_int)

    def _scale_shape(self, acc: torch.Tensor) -> tuple[int, ...]:
        return (*([1] * (acc.dim() - 1)), -1)

    def macs_per_sample(self, input_hw: tuple[int, int] | None = None) -> int:
        return self.in_features * self.out_features
