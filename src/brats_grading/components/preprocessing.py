"""The preprocessing every bundle shares, and the training augmentation, as MONAI transform lists.

Preprocessing order matters: z-scoring runs on the cropped, native-resolution brain so the
background zeros that define "non-zero" are still exact; resizing comes last.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import (
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    FromMetaTensord,
    LoadImaged,
    MapTransform,
    NormalizeIntensityd,
    Orientationd,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Resized,
    Transform,
)

from .validation import MIN_NONZERO_VOXELS, MIN_SIDE, DataValidationError


def _spatial(spatial_size: int | Sequence[int]) -> tuple[int, int, int]:
    size = (spatial_size,) * 3 if isinstance(spatial_size, int) else tuple(int(s) for s in spatial_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"spatial_size must be an int or three positive ints, got {spatial_size!r}")
    return size  # type: ignore[return-value]


class CheckVoxelsd(MapTransform):
    """Refuse a loaded case the network would grade like any other although it is no brain MRI: NaN / Inf
    voxels, a channel all 0, a file holding several volumes, a side under ``MIN_SIDE`` voxels, fewer than
    ``MIN_NONZERO_VOXELS`` non-zero voxels in a channel, or a channel whose non-zero voxels are one value.

    The same rules as the data check's :func:`.validation.check_volume`. Raises
    :class:`.validation.DataValidationError` naming the case and channel; the inference guard then names the file.
    """

    def __call__(self, data: dict) -> dict:
        for key in self.key_iterator(data):
            image = data[key]
            case = data.get("id", "?")
            plain = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
            if plain.ndim != 4:
                raise DataValidationError(
                    f"case '{case}': '{key}' loaded with shape {tuple(plain.shape)}; expected (channels, x, y, z): "
                    "one 3-D volume per file"
                )
            if min(plain.shape[1:]) < MIN_SIDE:
                raise DataValidationError(
                    f"case '{case}': '{key}' has shape {tuple(plain.shape[1:])}, a side under {MIN_SIDE} voxels; "
                    "expected a 3-D brain volume"
                )
            low, high = torch.aminmax(plain.reshape(plain.shape[0], -1), dim=1)  # one pass; NaN and Inf propagate
            if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
                bad = int((~torch.isfinite(plain)).sum())
                raise DataValidationError(f"case '{case}': {bad} NaN or Inf voxels in '{key}'; expected finite values")
            empty = [c for c in range(plain.shape[0]) if low[c] == 0 and high[c] == 0]
            if empty:
                raise DataValidationError(f"case '{case}': channel(s) {empty} of '{key}' are all 0; expected MRI")
            for channel, volume in enumerate(plain):
                nonzero = volume[volume != 0]
                if nonzero.numel() < MIN_NONZERO_VOXELS:
                    raise DataValidationError(
                        f"case '{case}': channel {channel} of '{key}' has {nonzero.numel()} non-zero voxels (fewer "
                        f"than {MIN_NONZERO_VOXELS}); expected a brain"
                    )
                if nonzero.min() == nonzero.max():
                    raise DataValidationError(
                        f"case '{case}': channel {channel} of '{key}' has one value ({float(nonzero[0]):g}) in every "
                        "non-zero voxel: no contrast; expected MRI"
                    )
        return data


def loading_transforms(image_key: str = "image") -> list[Transform]:
    """Load the record's files as channels, refuse non-finite or empty ones, orient RAS: done once per case.

    Channels come first by ``EnsureChannelFirstd`` rather than the loader's option, so that a host that
    drops ``LoadImaged`` and passes an image array itself (MONAI Deploy's bundle operator, channel-last
    with ``original_channel_dim`` -1) still gets channel-first data.
    """
    return [
        LoadImaged(keys=image_key, image_only=True),
        EnsureChannelFirstd(keys=image_key),
        CheckVoxelsd(keys=image_key),
        Orientationd(keys=image_key, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
    ]


def network_input_transforms(
    spatial_size: int | Sequence[int] = (128, 128, 128), image_key: str = "image", keep_meta: bool = False
) -> list[Transform]:
    """Crop to the brain, z-score non-zero voxels per channel, resize: what makes a loaded case one network's input.

    The crop's foreground is the voxels above zero in any channel of ``image_key``, so it depends on the
    channels present: an ensemble member that reads FLAIR only gets a FLAIR-only crop, as in its own bundle.
    """
    size = _spatial(spatial_size)
    transforms = [
        CropForegroundd(
            keys=image_key, source_key=image_key, allow_smaller=True, start_coord_key=None, end_coord_key=None
        ),
        NormalizeIntensityd(keys=image_key, nonzero=True, channel_wise=True),
        Resized(keys=image_key, spatial_size=size, mode="trilinear", anti_aliasing=False),
        EnsureTyped(keys=image_key, dtype=torch.float32, track_meta=keep_meta),
    ]
    if keep_meta:
        transforms.append(FromMetaTensord(keys=image_key))
    return transforms


def preprocessing_transforms(
    spatial_size: int | Sequence[int] = (128, 128, 128), image_key: str = "image", keep_meta: bool = False
) -> list[Transform]:
    """Load the modalities as channels, orient RAS, crop to the brain, z-score non-zero voxels, resize.

    Output: ``image`` as float32 ``(C, *spatial_size)``, C = number of files in the record's ``image``.
    With ``keep_meta=True`` (inference with saliency maps) ``image`` is still a plain tensor, and MONAI's
    ``FromMetaTensord`` adds ``<image_key>_meta_dict`` (affine, file names...) and ``<image_key>_transforms``
    (the applied operations), so ``Compose(...).inverse`` maps a tensor of the network's input grid back to
    the first modality file's space.
    """
    return loading_transforms(image_key) + network_input_transforms(spatial_size, image_key, keep_meta)


def augmentation_transforms(
    spatial_size: int | Sequence[int] = (128, 128, 128),
    image_key: str = "image",
    prob: float = 0.6,
    rotate_range: float = 0.2,
    scale_range: float = 0.08,
    translate_fraction: float = 0.08,
    flip_prob: float = 0.5,
) -> list[Transform]:
    """Random affine (rotate +-0.2 rad, zoom 0.92-1.08, translate +-8 %) with p=0.6, then flips with p=0.5 per axis.

    Small ranges: the volumes are co-registered and skull-stripped, so large warps would only add
    implausible anatomy; flips are safe because the grade does not depend on side.
    """
    size = _spatial(spatial_size)
    affine = RandAffined(
        keys=image_key,
        prob=prob,
        rotate_range=(rotate_range,) * 3,
        scale_range=(scale_range,) * 3,
        translate_range=tuple(translate_fraction * s for s in size),
        mode="bilinear",
        padding_mode="zeros",
    )
    flips = [RandFlipd(keys=image_key, prob=flip_prob, spatial_axis=axis) for axis in range(3)]
    return [affine, *flips]


def intensity_augmentation_transforms(image_key: str = "image", prob: float = 0.0) -> list[Transform]:
    """What changes between scanners, each with probability ``prob`` (0: off, the bundles' default).

    On the z-scored input: per-channel contrast (x 0.85-1.15) and brightness (+-0.15), gamma 0.75-1.35
    (statistics kept), a smooth bias field, blur up to 0.5 voxel in-plane and 1 voxel across slices (thick
    slices), and Gaussian noise up to 0.2. A model that leans on one scanner's intensities loses most of its
    skill on another's (docs/performance.md, the shifted site); these make it see many.
    """
    return [
        RandScaleIntensityd(keys=image_key, factors=0.15, channel_wise=True, prob=prob),
        RandShiftIntensityd(keys=image_key, offsets=0.15, channel_wise=True, prob=prob),
        RandAdjustContrastd(keys=image_key, gamma=(0.75, 1.35), retain_stats=True, prob=prob),
        RandBiasFieldd(keys=image_key, coeff_range=(0.0, 0.2), prob=prob),
        RandGaussianSmoothd(keys=image_key, sigma_x=(0.0, 0.5), sigma_y=(0.0, 0.5), sigma_z=(0.0, 1.0), prob=prob),
        RandGaussianNoised(keys=image_key, std=0.2, prob=prob),
    ]
