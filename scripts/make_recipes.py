"""Regenerate the shipped augmentation recipes in albumentations' own YAML format (pipelines/augment/)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A

OUT = Path(__file__).parents[1] / "pipelines" / "augment"


def bbox_params(min_visibility: float = 0.3) -> A.BboxParams:
    return A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=min_visibility, clip=True)


def recipes() -> dict[str, A.Compose]:
    photometric = [
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.8),
        A.RandomGamma(gamma_limit=(80, 120), p=0.3),
        A.GaussianBlur(blur_limit=(3, 5), p=0.2),
        A.GaussNoise(std_range=(0.02, 0.06), p=0.3),
    ]
    return {
        # the original project's `flipped_` copies
        "flip": A.Compose([A.HorizontalFlip(p=1.0)], bbox_params=bbox_params()),
        "flip-vertical": A.Compose([A.VerticalFlip(p=1.0)], bbox_params=bbox_params()),
        # factory lighting: exposure, contrast, focus, sensor noise
        "photometric": A.Compose(photometric, bbox_params=bbox_params()),
        # orientation, small camera shifts, crops that keep every defect
        "geometric": A.Compose(
            [
                A.RandomRotate90(p=0.5),
                A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-8, 8), p=0.7),
                A.BBoxSafeRandomCrop(erosion_rate=0.0, p=0.5),
            ],
            bbox_params=bbox_params(min_visibility=0.5),
        ),
        "fabric-default": A.Compose(
            [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.3), *photometric],
            bbox_params=bbox_params(),
        ),
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, pipeline in recipes().items():
        A.save(pipeline, str(OUT / f"{name}.yaml"), data_format="yaml")
        print(f"wrote {OUT / (name + '.yaml')}")


if __name__ == "__main__":
    main()
