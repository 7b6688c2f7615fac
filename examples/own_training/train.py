"""Train a small CNN with random-resized-crop augmentation, and write its predictions for classaudit.

A training script like any other: its own arguments, data, model and loop. What classaudit needs from it is the
last step, `write_predictions`: predictions.csv (one row per image of each split: split, index, label, pred, p_true)
and classes.txt (one class name a line) in the folder --out. The data are classaudit's embedded `shapes` images
(10 classes, each defined by one known cue; see `load_data` to put your own there).

    python train.py --crop 0.25 --seed 0 --out /tmp/run     # one run, by hand
    classaudit sweep study.toml                              # every strength and seed that study.toml lists
"""

from __future__ import annotations

import argparse
import csv
import math
import os

import torch
import torch.nn.functional as F
from torch import nn


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=float, default=1.0, help="smallest area fraction a random crop keeps (1 = off)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the model's initialisation and the data order")
    parser.add_argument("--out", required=True, help="folder to write predictions.csv and classes.txt into")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.02, help="peak learning rate (AdamW)")
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--images-per-class", type=int, default=40, help="training images of each class")
    return parser.parse_args()


def load_data(images_per_class: int, size: int = 16):
    """Class names and (images, labels) of each split as float tensors in [0, 1]. The images are the same in every
    run (their own seeds, not the run's), as classaudit requires: runs are compared image by image."""
    from classaudit.shapes import CLASSES, generate

    splits = {}
    for name, n, seed in (("train", images_per_class, 0), ("val", 20, 1), ("test", 30, 2)):
        x, y = generate(n, size, seed)
        splits[name] = (torch.from_numpy(x).float() / 255, torch.from_numpy(y))
    return list(CLASSES), splits


def random_resized_crop(x: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Each image's own crop of area fraction in [scale, 1] and aspect ratio in [3/4, 4/3], resized back to the
    full image (one batched affine resampling); scale = 1 returns the images unchanged."""
    if scale >= 1:
        return x
    n = x.shape[0]
    area = torch.empty(n).uniform_(scale, 1, generator=generator)
    aspect = torch.exp(torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator))
    width, height = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - width)
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - height)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = width, cx, height, cy
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def make_model(num_classes: int) -> nn.Module:
    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(block(3, 12), block(12, 24), block(24, 48), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(48, num_classes))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> None:
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    steps = args.epochs * (len(x) // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps)
    model.train()
    for epoch in range(args.epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(len(x) // args.batch_size):
            batch = order[i * args.batch_size:(i + 1) * args.batch_size]
            images = random_resized_crop(x[batch], args.crop, generator).to(args.device)
            loss = F.cross_entropy(model(images), y[batch].to(args.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}", flush=True)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: str):
    """Predicted class and the probability given to the true class, for every image."""
    model.eval()
    probabilities = model(x.to(device)).softmax(1).cpu()
    return probabilities.argmax(1), probabilities.gather(1, y[:, None]).squeeze(1)


def write_predictions(out: str, class_names: list[str], predictions: dict) -> None:
    """What classaudit reads: predictions.csv, one row per image of each split (index = the image's position in its
    split, the same image in every run), and classes.txt, class 0 on the first line."""
    with open(os.path.join(out, "predictions.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["split", "index", "label", "pred", "p_true"])
        for split, (label, pred, p_true) in predictions.items():
            for i in range(len(label)):
                writer.writerow([split, i, int(label[i]), int(pred[i]), f"{float(p_true[i]):.6f}"])
    with open(os.path.join(out, "classes.txt"), "w") as f:
        f.write("\n".join(class_names) + "\n")


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    class_names, data = load_data(args.images_per_class)
    model = make_model(len(class_names)).to(args.device)
    train(model, *data["train"], args)
    predictions = {split: (data[split][1], *predict(model, *data[split], args.device)) for split in ("val", "test")}
    write_predictions(args.out, class_names, predictions)


if __name__ == "__main__":
    main()
