"""Tessera's own perceptual backbone (not from taming / TE-VQGAN: no upstream code exists for it).

Used by reference/upstream_vqgan_fixtures.py under upstream's LPIPS head and by the benchmark's
reference/taming_modules.py. Rust twin: `tessera_models::perceptual::Backbone::Tiny`.
"""
import torch.nn as nn


class TinyFeatures(nn.Module):
    """Taps are the ReLU outputs that end the slices features[0:4], [4:9], [9:12] — i.e. after
    features[3], features[8] and features[11] (the ReLU that follows conv features[10]); channels 32,
    64, 128. Keys: features.{0,2,5,7,10}.{weight,bias}."""

    chns = (32, 64, 128)
    slices = ((0, 4), (4, 9), (9, 12))

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU())

    def forward(self, x):
        taps = []
        for lo, hi in self.slices:
            for i in range(lo, hi):
                x = self.features[i](x)
            taps.append(x)
        return taps
