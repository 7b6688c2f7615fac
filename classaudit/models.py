"""Models: a small fast CNN for small images, a CIFAR-style ResNet-18, and any torchvision classifier by name,
with their dropout and drop-path layers.

Every model exposes `head` (the final linear layer) so a fine-tuning stage can freeze everything else, and
`head_dropout` before it. Dropout and drop path are layers of rate 0 until training sets their rate
(`set_dropout`, `set_drop_path`); at rate 0 they return their input itself, so a model trains exactly as it
would without them. Nothing here picks a device; the caller moves the model.
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


def dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each element with probability p and scale the others by 1 / (1 - p) (Srivastava et al. 2014),
    drawing from `generator`, so a run's masks follow its seed. p = 0 returns x itself."""
    if p <= 0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep.to(x.dtype) / (1 - p)


def drop_path(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016) on a residual branch: zero the whole branch of each sample with
    probability p, scaling the kept ones by 1 / (1 - p) (timm's form, so evaluation needs no rescaling).
    p = 0 returns x itself."""
    if p <= 0:
        return x
    keep = torch.rand(x.shape[0], generator=generator, device=x.device) >= p
    return x * keep.to(x.dtype).view(-1, *[1] * (x.ndim - 1)) / (1 - p)


class _DropLayer(nn.Module):
    """A layer that applies `drop` in training mode, at a rate and with a generator training sets each epoch.
    It has no parameters or buffers: adding one to a model changes neither its state dict nor its initialisation."""

    drop = staticmethod(dropout)

    def __init__(self):
        super().__init__()
        self.p, self.generator = 0.0, None

    def forward(self, x):
        return self.drop(x, self.p, self.generator) if self.training else x


class Dropout(_DropLayer):
    """`dropout` as a layer; its rate is set by `set_dropout`."""


class DropPath(_DropLayer):
    """`drop_path` as a layer on a residual branch; its rate is set by `set_drop_path`."""

    drop = staticmethod(drop_path)


def set_dropout(model: nn.Module, p: float, generator: torch.Generator | None = None) -> None:
    """Set every `Dropout` layer of the model to rate p: before the head, and in the conv blocks where the
    model has them (the `dropout` entry of `classaudit.regularizers` says where, per model)."""
    for m in model.modules():
        if isinstance(m, Dropout):
            m.p, m.generator = p, generator


def set_drop_path(model: nn.Module, p: float, generator: torch.Generator | None = None) -> None:
    """Stochastic depth with the linear rule of Huang et al. 2016: residual block l of L (counted from the
    input) drops its branch with probability p * l / L, so the last block drops with p and the first with
    p / L. Raises ValueError for p > 0 on a model without `DropPath` layers (study validation refuses it first)."""
    layers = [m for m in model.modules() if isinstance(m, DropPath)]
    if p > 0 and not layers:
        raise ValueError(f"drop_path = {p:g}: {type(model).__name__} has no residual blocks to drop")
    for depth, m in enumerate(layers, start=1):
        m.p, m.generator = p * depth / len(layers), generator


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """conv(w) -> [conv(2w), pool] -> [conv(4w), pool] -> [conv(4w), pool] -> global max pool -> linear.

    The shape of the fast CIFAR-10 training networks (Page's ResNet-9, airbench) without residuals: most of the
    compute sits at low resolution, so it trains at a few thousand 32x32 images/s on two CPU cores at w=32.
    Dropout after each max-pool and before the head.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64):
        super().__init__()
        w = width
        # Each pool and its dropout share one slot of `features`, so the parameters keep their names.
        self.features = nn.Sequential(
            _conv_bn(in_channels, w),
            _conv_bn(w, 2 * w), nn.Sequential(nn.MaxPool2d(2), Dropout()),
            _conv_bn(2 * w, 4 * w), nn.Sequential(nn.MaxPool2d(2), Dropout()),
            _conv_bn(4 * w, 4 * w), nn.Sequential(nn.MaxPool2d(2), Dropout()),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.head_dropout = Dropout()
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_dropout(self.features(x)))


class _Block(nn.Module):
    """A basic residual block; dropout between its convs, drop path on its residual branch."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.dropout = Dropout()
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.drop_path = DropPath()
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.drop_path(self.conv2(self.dropout(self.conv1(x)))) + self.shortcut(x))


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
        self.head_dropout = Dropout()
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.head(self.head_dropout(self.features(x)))


class _ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.conv2 = _dirac_conv(cin, cout), _dirac_conv(cout, cout)
        # running statistics follow fast (airbench keeps 0.6 of the old value), as suits a few-epoch schedule;
        # unlike airbench the BatchNorm scale stays learnable, as in every other model here
        self.norm1, self.norm2 = nn.BatchNorm2d(cout, momentum=0.4), nn.BatchNorm2d(cout, momentum=0.4)
        self.dropout = Dropout()

    def forward(self, x):
        x = self.dropout(F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2))))
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
        self.head_dropout = Dropout()
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
        return self.head(self.head_dropout(torch.amax(x, dim=(2, 3)))) / 9


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
        self.head_dropout = Dropout()
        self.head = nn.Linear(last.in_features, num_classes)
        setattr(parent, attr, nn.Identity())
        self.grey = in_channels == 1

    def forward(self, x):
        if self.grey:
            x = x.expand(-1, 3, -1, -1)
        return self.head(self.head_dropout(self.body(x)))


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
    """model.train(), except that a frozen backbone stays in eval mode (BatchNorm running statistics as at the
    freeze, no dropout inside it): only the head is trained, with the dropout before it."""
    if getattr(model, "backbone_frozen", False):
        model.eval()
        model.head.train()
        model.head_dropout.train()
    else:
        model.train()
