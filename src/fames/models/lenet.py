"""LeNet-5-style CNN: two 5x5 convolutions with max pooling, three fully connected layers."""

from __future__ import annotations

from torch import nn


class LeNet(nn.Module):
    """LeNet-5 layout, widened (16/32 channels) so it clears 90 % on Fashion-MNIST.

    Args:
        in_channels: input image channels.
        num_classes: output classes.
        image_size: input height/width (28 for Fashion-MNIST, 8 for digits).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 5, padding=2)
        pad2 = 0 if image_size >= 16 else 2  # tiny inputs (8x8 digits) keep their size through conv2
        self.conv2 = nn.Conv2d(16, 32, 5, padding=pad2)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        side = ((image_size // 2) - 4 + 2 * pad2) // 2
        self.fc1 = nn.Linear(32 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = x.flatten(1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)
