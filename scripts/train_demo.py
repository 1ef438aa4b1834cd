"""Train the demo model shipped in resources/demo/ (run from the repository root).

An MLP 64 -> 256 -> 128 -> 10 on scikit-learn's bundled digits dataset (8x8 images, no
download). Every layer's input width is a multiple of 32, so the 32-value block encodings apply
to all of them; only fc2 (input 256) also takes the 256-value k-quants, so presets show visible
fallbacks on the others. scikit-learn is needed here only: the held-out test split is saved as
an .npz beside the weights and the app never imports scikit-learn.

    python scripts/train_demo.py [--out resources/demo] [--epochs 150] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

WIDTHS = [64, 256, 128, 10]
INPUT_SCALE = 1.0 / 16.0  # digits pixels are 0..16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="resources/demo")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    digits = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        digits.data.astype(np.uint8), digits.target.astype(np.uint8), test_size=0.2,
        stratify=digits.target, random_state=args.seed)
    xt = torch.from_numpy(x_tr.astype(np.float32) * INPUT_SCALE)
    yt = torch.from_numpy(y_tr.astype(np.int64))

    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        if epoch % 100 == 0 or epoch == args.epochs - 1:
            print(f"epoch {epoch}: loss {loss.item():.4f}")

    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_te.astype(np.float32) * INPUT_SCALE)).argmax(1)
    acc = float((pred.numpy() == y_te).mean())
    print(f"test accuracy {acc:.4f} on {len(y_te)} held-out images")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prefixes = ["fc1", "fc2", "fc3"]
    linears = [m for m in model if isinstance(m, nn.Linear)]
    tensors = {}
    for p, lin in zip(prefixes, linears, strict=True):
        tensors[f"{p}.weight"] = lin.weight.detach().contiguous()
        tensors[f"{p}.bias"] = lin.bias.detach().contiguous()
    save_file(tensors, out / "model.safetensors",
              metadata={"description": "DigitsMLP trained by scripts/train_demo.py",
                        "test_accuracy": f"{acc:.4f}"})
    np.savez_compressed(out / "digits_test.npz", x=x_te, y=y_te)
    config = {
        "model_type": "digits_mlp",
        "architectures": ["DigitsMLP"],
        "layers": WIDTHS,
        "activation": "relu",
        "tensor_prefixes": prefixes,
        "input_scale": INPUT_SCALE,
        "num_classes": 10,
        "test_data": "digits_test.npz",
        "float_test_accuracy": round(acc, 4),
        "seed": args.seed,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    for f in ("model.safetensors", "digits_test.npz", "config.json"):
        (out / f).chmod(0o644)
    print(f"wrote {out}/model.safetensors, config.json, digits_test.npz")


if __name__ == "__main__":
    main()
