"""Bits configs by name and pattern; bad names and bad bits raise ValueError."""

import pytest
from torch import nn

from fames.quant import bits_of, quantize_
from fames.quant.config import parse_layer_bits


def net():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=4), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 10))


def test_by_name_and_pattern():
    model = net()
    quantize_(model, {"*": 4, "0": 8, "4": {"w": 2, "a": 3}})
    bits = bits_of(model)
    assert bits["0"]["w"] == 8 and bits["2"]["w"] == 4 and (bits["4"]["w"], bits["4"]["a"]) == (2, 3)


def test_partial_config_leaves_float():
    model = net()
    quantize_(model, {"[02]": 3})
    assert set(bits_of(model)) == {"0", "2"}
    assert type(model[4]) is nn.Linear


@pytest.mark.parametrize("config,match", [
    ({"conv9": 4}, "unknown layer 'conv9'"),
    ({"fc*": 4}, "matches no"),
    ({"0": 1}, "outside the supported range"),
    ({"0": 9}, "outside the supported range"),
    ({"0": "x"}, "must be an integer"),
    ({"0": {"w": 4, "b": 2}}, "expected keys"),
    ({"0": True}, "must be an integer"),
])
def test_bad_configs(config, match):
    with pytest.raises(ValueError, match=match):
        quantize_(net(), config)


def test_parse_strings():
    assert parse_layer_bits("5").w == 5
    assert parse_layer_bits({"w": "2", "a": "4"}).a == 4
