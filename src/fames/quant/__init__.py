"""Quantization: LSQ quantizers, integer-domain layers, `quantize_`, checkpoints, bit allocation."""

from fames.quant.api import bits_of, quant_layers, quantizable_layers, quantize_
from fames.quant.config import LayerBits
from fames.quant.layers import QConv2d, QLinear, QuantLayer
from fames.quant.lsq import LsqQuantizer

__all__ = [
    "LayerBits", "LsqQuantizer", "QConv2d", "QLinear", "QuantLayer",
    "bits_of", "quant_layers", "quantizable_layers", "quantize_",
]
