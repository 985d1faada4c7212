"""A user's own model file, as `fames run --model tests/cli/user_model.py:SmallNet` would load it.

A small CNN for the 8x8 sklearn digits; deliberately not one of fames' built-in networks.
"""

from torch import nn


class SmallNet(nn.Module):
    """conv(1->8) -> relu -> conv(8->16, stride 2) -> relu -> linear(16*4*4 -> 10)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.fc = nn.Linear(2 * width * 4 * 4, 10)

    def forward(self, x):
        x = nn.functional.relu(self.conv1(x))
        x = nn.functional.relu(self.conv2(x))
        return self.fc(x.flatten(1))


def make_net() -> nn.Module:
    """A factory function, for `--model user_model.py:make_net`."""
    return SmallNet()
