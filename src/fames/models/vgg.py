"""VGG-style CNN: six 3x3 convolutions with BatchNorm in three stages, then two linear layers."""

from __future__ import annotations

from torch import nn


class VGG(nn.Module):
    """Six conv layers (widths `widths[i]` twice per stage), max pooling between stages.

    Args:
        in_channels: input image channels.
        num_classes: output classes.
        widths: channel width of the three stages.
        image_size: input height/width.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, widths: tuple[int, int, int] = (32, 64, 128),
        image_size: int = 28,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(2):
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = image_size // 8
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * side * side, 256), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(256, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
