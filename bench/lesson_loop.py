"""The lesson's own pipeline, written faithfully: the baseline every Thaw benchmark is compared with.

Resize 256 → RandomCrop 224 → flip, ImageNet normalisation, batch 64, 2 loader workers, fp32, Adam on the new
head (lr 1e-3), StepLR(7, 0.1); the frozen backbone runs forward for every batch of every epoch.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader
from torchvision import datasets, models, transforms


def run_lesson_loop(data_root, epochs: int = 10, batch_size: int = 64, workers: int = 2, resize: int = 256,
                    crop: int = 224, fine_tune: bool = False, device: str | None = None, max_batches: int = 0,
                    timings: dict | None = None) -> dict:
    setup_started = time.perf_counter()  # end to end, as Thaw's side is timed: data, model, then training
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train_transform = transforms.Compose([
        transforms.Resize(resize), transforms.RandomCrop(crop), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    val_transform = transforms.Compose([
        transforms.Resize(resize), transforms.CenterCrop(crop),
        transforms.ToTensor(), transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    train_dataset = datasets.ImageFolder(f"{data_root}/train", transform=train_transform)
    val_dataset = datasets.ImageFolder(f"{data_root}/val", transform=val_transform)
    train_loader = DataLoader(train_dataset, batch_size=batch_size, shuffle=True, num_workers=workers, pin_memory=True)
    val_loader = DataLoader(val_dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=True)

    torch.manual_seed(0)
    model = models.resnet18(weights=models.ResNet18_Weights.DEFAULT)
    model.fc = nn.Linear(model.fc.in_features, len(train_dataset.classes))
    if not fine_tune:
        for name, param in model.named_parameters():
            if "fc" not in name:
                param.requires_grad = False
    model = model.to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.001)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)

    wait = compute = 0.0
    images = 0
    per_epoch = []  # images/s of each epoch's training loop
    start = time.perf_counter()
    val_acc = 0.0
    for _epoch in range(epochs):
        model.train()
        tick = time.perf_counter()
        epoch_started, epoch_images = tick, images
        for i, (x, y) in enumerate(train_loader):
            if max_batches and i >= max_batches:
                break
            got = time.perf_counter()
            wait += got - tick
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            loss.item()  # the lesson's running_loss += loss.item() synchronises here
            tick = time.perf_counter()
            compute += tick - got
            images += len(y)
        per_epoch.append((images - epoch_images) / max(1e-9, time.perf_counter() - epoch_started))
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in val_loader:
                out = model(x.to(device))
                correct += (out.argmax(1).cpu() == y).sum().item()
                total += len(y)
        val_acc = correct / total
        scheduler.step()
    seconds = time.perf_counter() - setup_started
    return {"seconds": seconds, "setup_seconds": start - setup_started, "val_acc": val_acc,
            "images_per_s": images / max(1e-9, wait + compute),
            "data_wait_share": wait / max(1e-9, wait + compute), "epoch_images_per_s": per_epoch}


if __name__ == "__main__":
    import sys

    from common import make_jpeg_dataset, seeded_torch_home  # noqa: E402

    seeded_torch_home()
    root = make_jpeg_dataset(__import__("pathlib").Path("/tmp/thaw-bench/jpegs"))
    print(run_lesson_loop(root, epochs=int(sys.argv[1]) if len(sys.argv) > 1 else 2))
