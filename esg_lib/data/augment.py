"""The x4 offline augmentation (original + 3 copies) and the online option, with torchvision v2.

What the paper says: "we applied data augmentation techniques such as rotation, adding random noise,
and adjusting brightness ... the total number of samples reached 28,904" (= 7226 x 4; X-SDD 1360 ->
5440). It gives no angles, noise level or brightness range.

What we do (our reading, stated in the README's deviations table): each source image gets one copy per
technique, in this order, so ``augment_copies=3`` gives exactly the paper's x4:

1. ``rotate``: a rotation by 90, 180 or 270 degrees (chosen uniformly). Right angles are lossless on
   square images: no interpolation blur and no filled corners, which would mark copies as synthetic.
2. ``noise``: additive Gaussian noise, sigma = 0.04 of the full range (about 10 grey levels), clipped.
3. ``brightness``: brightness factor uniform in [0.7, 1.3].

More copies cycle through the list again with fresh random parameters. Each copy is deterministic: its
random draws are seeded from (split seed, the source's sha256, copy number) inside a forked RNG, so the
copies do not depend on the order of the images or on the caller's RNG state, and twins get identical
copies. Grayscale datasets are augmented on one channel, so noise keeps them grey.

Online augmentation (``online_augment=True``, training part only, drawn from the global torch RNG each
time an item is read): horizontal and vertical flips (p = 0.5 each), a right-angle rotation (0/90/180/
270), brightness factor in [0.7, 1.3], and Gaussian noise sigma 0.04 with p = 0.5.

Two more online options, each off by default and independent of ``online_augment`` (issue 33's search
space; they run first, in this order, before the options above): ``online_crop`` > 0 is torchvision's
``RandomResizedCrop`` back to the image size with area scale in [online_crop, 1] and aspect ratio in
[3/4, 4/3] (a random zoom and translation); ``rand_augment`` > 0 is torchvision's ``RandAugment`` with
that many operations at magnitude 9 (on the uint8 pixels, which the float image holds exactly).
:func:`training_transform` builds the composition and :func:`training_transform_identity` describes
it for the bundle identity; with both options off the description is exactly the earlier one, so run
identities made before these options existed are unchanged.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import torch
from torchvision.transforms import v2

OFFLINE_OPS: tuple[str, ...] = ("rotate", "noise", "brightness")
ROTATION_ANGLES: tuple[int, ...] = (90, 180, 270)
NOISE_SIGMA: float = 0.04
BRIGHTNESS: tuple[float, float] = (0.7, 1.3)


def augmentation_params(copies: int) -> dict:
    """JSON-able description of the offline augmentation (goes into the bundle identity)."""
    return {
        "copies": copies,
        "ops": [OFFLINE_OPS[k % len(OFFLINE_OPS)] for k in range(copies)],
        "rotation_degrees": list(ROTATION_ANGLES),
        "noise_sigma": NOISE_SIGMA,
        "brightness": list(BRIGHTNESS),
        "library": "torchvision.transforms.v2",
    }


def online_params() -> dict:
    return {
        "hflip_p": 0.5, "vflip_p": 0.5, "rotation_degrees": [0, *ROTATION_ANGLES],
        "brightness": list(BRIGHTNESS), "noise_sigma": NOISE_SIGMA, "noise_p": 0.5,
    }


def _right_angle_rotation(angles: Sequence[int]) -> v2.Transform:
    # NEAREST at exact right angles on a square grid reproduces torch.rot90 bit for bit
    return v2.RandomChoice([v2.RandomRotation((a, a), interpolation=v2.InterpolationMode.NEAREST)
                            for a in angles])


def _float_op(op: v2.Transform) -> v2.Transform:
    # v2.GaussianNoise only accepts float images in older torchvision: go through float and back
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), op, v2.ToDtype(torch.uint8, scale=True)])


def offline_transform(op: str) -> v2.Transform:
    """The uint8 -> uint8 transform of one offline technique."""
    if op == "rotate":
        return _right_angle_rotation(ROTATION_ANGLES)
    if op == "noise":
        return _float_op(v2.GaussianNoise(mean=0.0, sigma=NOISE_SIGMA, clip=True))
    if op == "brightness":
        return v2.ColorJitter(brightness=BRIGHTNESS)
    raise ValueError(f"unknown augmentation {op!r}; known: {', '.join(OFFLINE_OPS)}")


def online_transform() -> v2.Transform:
    """Float [0, 1] -> float [0, 1] random transform applied to training items as they are read."""
    return v2.Compose([
        v2.RandomHorizontalFlip(0.5),
        v2.RandomVerticalFlip(0.5),
        _right_angle_rotation((0, *ROTATION_ANGLES)),
        v2.ColorJitter(brightness=BRIGHTNESS),
        v2.RandomApply([v2.GaussianNoise(mean=0.0, sigma=NOISE_SIGMA, clip=True)], p=0.5),
    ])


RAND_AUGMENT_MAGNITUDE = 9
CROP_RATIO: tuple[float, float] = (3 / 4, 4 / 3)


def training_transform(online_augment: bool, img_size: int, online_crop: float = 0.0,
                       rand_augment: int = 0) -> v2.Transform | None:
    """The training part's float [0, 1] -> float [0, 1] transform, or None when every option is off."""
    ops: list[v2.Transform] = []
    if online_crop:
        ops.append(v2.RandomResizedCrop(img_size, scale=(online_crop, 1.0), ratio=CROP_RATIO, antialias=True))
    if rand_augment:
        ops += [v2.ToDtype(torch.uint8, scale=True),
                v2.RandAugment(num_ops=rand_augment, magnitude=RAND_AUGMENT_MAGNITUDE),
                v2.ToDtype(torch.float32, scale=True)]
    if online_augment:
        ops.append(online_transform())
    if not ops:
        return None
    return ops[0] if len(ops) == 1 else v2.Compose(ops)


def training_transform_identity(online_augment: bool, online_crop: float = 0.0, rand_augment: int = 0) -> dict:
    """The bundle-identity entries of :func:`training_transform`: ``online_augment`` always, the other
    two only when on (so that identities from before they existed stay as they were)."""
    out: dict = {"online_augment": online_params() if online_augment else False}
    if online_crop:
        out["online_crop"] = {"op": "RandomResizedCrop", "scale": [online_crop, 1.0], "ratio": list(CROP_RATIO)}
    if rand_augment:
        out["rand_augment"] = {"op": "RandAugment", "num_ops": rand_augment, "magnitude": RAND_AUGMENT_MAGNITUDE}
    return out


TRANSFORM_IDENTITY_KEYS: tuple[str, ...] = ("online_augment", "online_crop", "rand_augment")


def copy_seed(seed: int, sha256: str, copy: int) -> int:
    digest = hashlib.sha256(f"esg-augment {seed} {sha256} {copy}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def make_copies(
    images: torch.Tensor,
    sha256s: Sequence[str],
    copies: Sequence[int],
    seed: int,
    grayscale: bool,
) -> torch.Tensor:
    """Augmented copies: ``images[i]`` (uint8, 3xHxW) transformed as copy number ``copies[i]`` (>= 1)."""
    transforms = {op: offline_transform(op) for op in OFFLINE_OPS}
    out = torch.empty_like(images)
    with torch.random.fork_rng(devices=[]):
        for i, (img, sha, k) in enumerate(zip(images, sha256s, copies)):
            if k < 1:
                raise ValueError("copy numbers start at 1 (0 is the original)")
            torch.manual_seed(copy_seed(seed, sha, k))
            x = img[:1] if grayscale else img
            y = transforms[OFFLINE_OPS[(k - 1) % len(OFFLINE_OPS)]](x)
            out[i] = y.expand(3, -1, -1) if grayscale else y
    return out
