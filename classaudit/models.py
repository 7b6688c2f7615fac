"""Models: a small fast CNN for small images, a CIFAR-style ResNet-18, and any torchvision classifier by name.

Every model exposes `head` (the final linear layer) so a fine-tuning stage can freeze everything else.
Nothing here picks a device; the caller moves the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

DESCRIPTIONS = {
    "smallcnn": "4 conv blocks (width w, 2w, 4w, 4w) with BatchNorm, 0.38 GFLOP/image at w=64 on 32x32",
    "airbench": "airbench-style net (Jordan 2024): whitened 2x2 stem, 3 conv groups (w, 4w, 4w); "
                "236 MFLOP/image at w=64, 66 at w=32 on 32x32; fast to train, the CIFAR-10 CPU recipe",
    "cifar_resnet18": "ResNet-18 with a 3x3 stem for 32x32 inputs (He et al. 2016; the CIFAR variant), 1.1 GFLOP/image",
    "<torchvision name>": "any torchvision classifier, e.g. resnet50; options pretrained, freeze_backbone",
}


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """conv(w) -> [conv(2w), pool] -> [conv(4w), pool] -> [conv(4w), pool] -> global max pool -> linear.

    The shape of the fast CIFAR-10 training networks (Page's ResNet-9, airbench) without residuals: most of the
    compute sits at low resolution, so it trains at a few thousand 32x32 images/s on two CPU cores at w=32.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_bn(in_channels, w),
            _conv_bn(w, 2 * w), nn.MaxPool2d(2),
            _conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),
            _conv_bn(4 * w, 4 * w), nn.MaxPool2d(2),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class CifarResNet18(nn.Module):
    """ResNet-18 for 32x32 images: 3x3 stem, no max-pool, four stages of two basic blocks."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64):
        super().__init__()
        w = width
        layers, cin = [_conv_bn(in_channels, w)], w
        for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
            layers += [_Block(cin, cout, 1 if i == 0 else 2), _Block(cout, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class _ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.conv2 = _dirac_conv(cin, cout), _dirac_conv(cout, cout)
        # running statistics follow fast (airbench keeps 0.6 of the old value), as suits a few-epoch schedule;
        # unlike airbench the BatchNorm scale stays learnable, as in every other model here
        self.norm1, self.norm2 = nn.BatchNorm2d(cout, momentum=0.4), nn.BatchNorm2d(cout, momentum=0.4)

    def forward(self, x):
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


def _dirac_conv(cin: int, cout: int) -> nn.Conv2d:
    """A 3x3 conv whose first min(cin, cout) filters start as the identity: the net starts close to its
    shallower self, which trains faster in short schedules (airbench)."""
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:min(cin, cout)])
    return conv


class AirbenchNet(nn.Module):
    """The network of airbench (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds"), width-scaled.

    A frozen 2x2 patch-whitening stem (its weights are set from the training images by `init_from_data`,
    only its bias learns), three conv groups [conv, max-pool, BN, GELU, conv, BN, GELU] of widths w, 4w, 4w,
    a global max-pool and a linear head with its output scaled by 1/9. Whitening and identity-initialised
    convs are what let it reach high accuracy in very few epochs, which is what a CPU sweep needs.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64):
        super().__init__()
        whitened = 2 * in_channels * 2 * 2  # each of a 2x2 patch's components, with both signs
        self.whiten = nn.Conv2d(in_channels, whitened, 2, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.groups = nn.Sequential(_ConvGroup(whitened, width), _ConvGroup(width, 4 * width),
                                    _ConvGroup(4 * width, 4 * width))
        self.head = nn.Linear(4 * width, num_classes, bias=False)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem to whiten 2x2 patches of `x` (normalised training images): the eigenvectors of the
        patch covariance, scaled by 1/sqrt(eigenvalue), and their negatives (so GELU keeps both signs)."""
        c, (h, w) = x.shape[1], self.whiten.weight.shape[2:]
        patches = x.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
        cov = patches.T @ patches / patches.shape[0]
        values, vectors = torch.linalg.eigh(cov.double())
        values, vectors = values.flip(0).float(), vectors.T.flip(0).float().reshape(-1, c, h, w)
        scaled = vectors / torch.sqrt(values + eps).view(-1, 1, 1, 1)
        self.whiten.weight.copy_(torch.cat((scaled, -scaled)))
        self.whiten.bias.zero_()

    def forward(self, x):
        x = self.groups(F.gelu(self.whiten(x)))
        return self.head(torch.amax(x, dim=(2, 3))) / 9


class _TorchvisionClassifier(nn.Module):
    """A torchvision classifier whose last Linear is replaced by `head` for our number of classes. torchvision's
    classifiers take RGB: a grey-scale image (MNIST) is given as three equal channels, which also suits their
    pretrained weights."""

    def __init__(self, name: str, num_classes: int, pretrained: bool, in_channels: int = 3):
        super().__init__()
        import torchvision.models as tvm

        if in_channels not in (1, 3):
            raise ValueError(f"model {name!r} takes 1- or 3-channel images, not {in_channels}")
        weights = tvm.get_model_weights(name).DEFAULT if pretrained else None  # downloads on users' machines
        self.body = tvm.get_model(name, weights=weights)
        parent, attr, last = _last_linear(self.body)
        self.head = nn.Linear(last.in_features, num_classes)
        setattr(parent, attr, nn.Identity())
        self.grey = in_channels == 1

    def forward(self, x):
        if self.grey:
            x = x.expand(-1, 3, -1, -1)
        return self.head(self.body(x))


def _last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = name
    if found is None:
        raise ValueError("model has no Linear layer to replace")
    parent_name, _, attr = found.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, attr, getattr(parent, attr)


def build_model(spec: Mapping[str, Any], num_classes: int, in_channels: int) -> nn.Module:
    name, options = spec["name"], dict(spec.get("options", {}))
    if name == "smallcnn":
        return SmallCNN(num_classes, in_channels, options.get("width", 64))
    if name == "airbench":
        return AirbenchNet(num_classes, in_channels, options.get("width", 64))
    if name == "cifar_resnet18":
        return CifarResNet18(num_classes, in_channels, options.get("width", 64))
    model = _TorchvisionClassifier(name, num_classes, options.get("pretrained", False), in_channels)
    if options.get("freeze_backbone", False):
        freeze_backbone(model)
    return model


def freeze_backbone(model: nn.Module) -> None:
    """Train only `model.head` from now on (transfer studies, or a fine-tuning stage): the backbone gets no
    gradients, and `train_mode` keeps it in eval mode, so its BatchNorm statistics stay as they are too."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.head.parameters():
        p.requires_grad_(True)
    model.backbone_frozen = True


def train_mode(model: nn.Module) -> None:
    """model.train(), except that a frozen backbone stays in eval mode (BatchNorm running statistics and
    dropout as at the freeze): only the head is trained."""
    if getattr(model, "backbone_frozen", False):
        model.eval()
        model.head.train()
    else:
        model.train()
