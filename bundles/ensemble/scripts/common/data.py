"""Find BraTS cases on disk and turn a datalist into the records a MONAI dataset consumes.

Layouts understood:

* BraTS 2018 / 2019: ``<root>/HGG/<id>/<id>_<modality>.nii.gz`` and ``<root>/LGG/...``;
* BraTS 2020: ``<root>/<id>/<id>_<modality>.nii.gz`` with ``name_mapping.csv`` holding ``Grade``;
* any folder of case folders plus a grades CSV (``--grades-csv``), e.g. a 2021 copy graded elsewhere.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

CHANNEL_ORDER: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
LABEL_NAMES: dict[int, str] = {0: "LGG", 1: "HGG"}
GRADE_TO_LABEL: dict[str, int] = {name: label for label, name in LABEL_NAMES.items()}
NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
GRADE_CSV_NAMES: tuple[str, ...] = ("name_mapping.csv",)
ID_COLUMNS: tuple[str, ...] = ("BraTS_2020_subject_ID", "BraTS_2019_subject_ID", "BraTS_2018_subject_ID", "id", "ID")


class DatasetError(ValueError):
    """Raised for a dataset folder or datalist that cannot be used; the message names the case or file."""


def find_modality_file(case_dir: Path, case_id: str, modality: str) -> Path:
    """Return ``<case_dir>/<case_id>_<modality>.nii[.gz]``, or raise naming the case and modality."""
    for suffix in NIFTI_SUFFIXES:
        candidate = case_dir / f"{case_id}_{modality}{suffix}"
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"case '{case_id}' in {case_dir}: missing modality '{modality}' (expected {case_id}_{modality}.nii.gz or .nii)"
    )


def _check_readable(path: Path, case_id: str) -> None:
    import nibabel as nib

    try:
        nib.load(str(path)).header.get_data_shape()
    except Exception as err:  # nibabel raises several types for broken files
        raise DatasetError(f"case '{case_id}': cannot read {path}: {err}") from err


def _expected_file(case_dir: Path, case_id: str, modality: str, allow_missing: bool) -> Path:
    try:
        return find_modality_file(case_dir, case_id, modality)
    except DatasetError:
        if not allow_missing:
            raise
        return case_dir / f"{case_id}_{modality}{NIFTI_SUFFIXES[0]}"  # reported when the case is loaded


def _case_record(
    case_dir: Path, root: Path, modalities: Sequence[str], check_readable: bool, allow_missing: bool = False
) -> dict:
    case_id = case_dir.name
    paths = [_expected_file(case_dir, case_id, m, allow_missing) for m in modalities]
    if check_readable:
        for path in paths:
            _check_readable(path, case_id)
    return {"id": case_id, "image": [str(p.relative_to(root)) for p in paths]}


def read_grades_csv(path: Path) -> dict[str, str]:
    """Read ``id -> grade`` from a CSV with a ``Grade`` column and an id column (BraTS 2020 style)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: Excel writes a byte-order mark
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        grade_col = next((f for f in fields if f.strip().lower() == "grade"), None)
        id_col = next((c for c in ID_COLUMNS if c in fields), None)
        if grade_col is None or id_col is None:
            raise DatasetError(
                f"{path}: needs a 'Grade' column and an id column (one of {', '.join(ID_COLUMNS)}); "
                f"found columns {fields}"
            )
        grades: dict[str, str] = {}
        for row in reader:
            case_id, grade = (row[id_col] or "").strip(), (row[grade_col] or "").strip().upper()
            if not case_id:
                continue
            if grade not in GRADE_TO_LABEL:
                raise DatasetError(f"{path}: case '{case_id}' has grade '{grade}', expected HGG or LGG")
            if case_id in grades:
                raise DatasetError(f"{path}: duplicate case id '{case_id}'")
            grades[case_id] = grade
    return grades


def _case_dirs(folder: Path) -> list[Path]:
    """The case folders of ``folder``: hidden and system folders (``.ipynb_checkpoints``, ``__MACOSX``) skipped."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def _refuse_dataset_parent(root: Path, case_dirs: Sequence[Path]) -> None:
    """A folder given one level too high holds datasets, not cases: say which folder was meant."""
    for folder in case_dirs:
        if any((folder / g).is_dir() for g in ("HGG", "LGG")) or any((folder / n).is_file() for n in GRADE_CSV_NAMES):
            raise DatasetError(
                f"{root} holds a dataset folder, not cases: {folder} has "
                f"{'HGG/ and LGG/' if (folder / 'HGG').is_dir() else 'a grades CSV'}; pass --dataset_dir {folder}"
            )


def scan_cases(
    dataset_dir: str | Path,
    modalities: Sequence[str] = CHANNEL_ORDER,
    grades_csv: str | Path | None = None,
    require_grades: bool = True,
    check_readable: bool = False,
    allow_missing: bool = False,
) -> list[dict]:
    """List the cases of a BraTS folder as ``{"id", "image", ["label", "grade"]}`` records.

    Image paths are relative to ``dataset_dir``, in the order of ``modalities``. Without grades
    (a 2021-style folder and no ``grades_csv``) the records carry no label when ``require_grades``
    is False (inference) and raise otherwise, since grading needs the HGG/LGG label. A folder beside
    ``HGG/`` and ``LGG/`` is an unknown grade and raises. ``allow_missing`` keeps a case with a missing
    modality (its expected path is listed) so that batch inference reports it instead of stopping.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    grade_dirs = [root / g for g in ("HGG", "LGG") if (root / g).is_dir()]
    if grade_dirs and grades_csv is None:
        others = sorted(p.name for p in root.iterdir() if p.is_dir() and p not in grade_dirs and p.name[0] not in "._")
        if others:
            raise DatasetError(
                f"{root}: unknown grade folder(s) {others}; expected only HGG/ and LGG/ beside each other"
            )
    records: list[dict] = []
    seen: dict[str, str] = {}
    if grade_dirs and grades_csv is None:
        for grade_dir in grade_dirs:
            for case_dir in _case_dirs(grade_dir):
                if case_dir.name in seen:
                    raise DatasetError(
                        f"duplicate case id '{case_dir.name}' in {seen[case_dir.name]} and {grade_dir.name}"
                    )
                seen[case_dir.name] = grade_dir.name
                record = _case_record(case_dir, root, modalities, check_readable, allow_missing)
                record.update(grade=grade_dir.name, label=GRADE_TO_LABEL[grade_dir.name])
                records.append(record)
    else:
        case_dirs = _case_dirs(root)
        _refuse_dataset_parent(root, case_dirs)
        if not case_dirs:
            raise DatasetError(f"{root} holds no case folders (expected HGG/ and LGG/ or one folder per case)")
        csv_path = (
            Path(grades_csv) if grades_csv else next((root / n for n in GRADE_CSV_NAMES if (root / n).is_file()), None)
        )
        grades = read_grades_csv(csv_path) if csv_path else {}
        if not grades and require_grades:
            raise DatasetError(
                f"{root}: no tumour grades found. Grading needs HGG/LGG labels: use the 2018/2019 layout "
                "(HGG/ and LGG/ folders), a 2020 copy with name_mapping.csv, or pass a grades CSV "
                "(columns 'id' and 'Grade'). BraTS 2021+ releases ship no grades."
            )
        for case_dir in case_dirs:
            record = _case_record(case_dir, root, modalities, check_readable, allow_missing)
            if grades:
                if case_dir.name not in grades:
                    if require_grades:
                        raise DatasetError(f"case '{case_dir.name}' has no grade in {csv_path}")
                else:
                    record.update(grade=grades[case_dir.name], label=GRADE_TO_LABEL[grades[case_dir.name]])
            records.append(record)
    if not records:
        raise DatasetError(f"{root}: no cases found")
    return records


def load_records(
    datalist_file: str | Path,
    dataset_dir: str | Path | None = None,
    fold: int | None = None,
    split: str = "all",
    modalities: Sequence[str] = CHANNEL_ORDER,
    allow_outside: bool = False,
) -> list[dict]:
    """Read a datalist and return records with absolute paths of the chosen ``modalities``.

    ``split`` is ``"train"`` (every fold but ``fold``), ``"val"`` (only ``fold``) or ``"all"``.
    ``dataset_dir`` defaults to the datalist's own folder. A path leaving it (absolute, or ``..``) is an
    error, since a datalist used with the wrong ``dataset_dir`` would otherwise read another dataset;
    ``allow_outside`` accepts it (inference on a list of cases stored anywhere).
    """
    path = Path(datalist_file)
    if not path.is_file():
        raise DatasetError(f"datalist {path} does not exist (write one with scripts/make_datalist.py)")
    content = json.loads(path.read_text())
    if "training" not in content:
        raise DatasetError(f"datalist {path} has no 'training' key")
    order = list(content.get("channel_order", CHANNEL_ORDER))
    unknown = [m for m in modalities if m not in order]
    if unknown or not modalities:
        raise DatasetError(f"modalities {list(modalities)} must be a non-empty subset of {order} ({path})")
    if split not in ("all", "train", "val"):
        raise DatasetError(f"split '{split}' must be one of 'all', 'train', 'val'")
    if split != "all" and fold is None:
        raise DatasetError(f"split '{split}' needs a fold")
    base = Path(dataset_dir) if dataset_dir else path.parent
    records = []
    first_entry: dict[str, int] = {}
    for index, item in enumerate(content["training"]):
        _check_item(item, index, path, order, needs_fold=split != "all")
        if item["id"] in first_entry:  # one patient twice: in two folds it would be trained and scored on
            raise DatasetError(
                f"datalist {path}: case id '{item['id']}' is listed twice (entries {first_entry[item['id']]} and "
                f"{index}, folds {content['training'][first_entry[item['id']]].get('fold')} and {item.get('fold')}); "
                "expected one entry per patient"
            )
        first_entry[item["id"]] = index
        if split == "train" and item["fold"] == fold or split == "val" and item["fold"] != fold:
            continue
        record = {k: v for k, v in item.items() if k != "image"}
        files = [item["image"][order.index(m)] for m in modalities]
        record["image"] = [str(base / f) if allow_outside else _inside(base, f, item["id"], path) for f in files]
        records.append(record)
    if not records:
        folds = sorted({item.get("fold") for item in content["training"]})
        raise DatasetError(f"datalist {path}: split '{split}' of fold {fold} is empty (folds present: {folds})")
    return records


def _check_item(item, index: int, source: Path, order: Sequence[str], needs_fold: bool) -> None:
    """One datalist entry: an id, one file per channel, a label of 0 or 1 if any, a fold when splitting."""
    if not isinstance(item, dict) or "id" not in item or "image" not in item:
        raise DatasetError(f"datalist {source}: entry {index} needs 'id' and 'image' keys, found {item!r:.120}")
    case = item["id"]
    if not isinstance(item["image"], list) or len(item["image"]) != len(order):
        raise DatasetError(f"datalist {source}: case '{case}' needs {len(order)} image paths ({list(order)})")
    label = item.get("label")
    if label is not None and (isinstance(label, bool) or label not in LABEL_NAMES):
        raise DatasetError(f"datalist {source}: case '{case}' has label {label!r}; expected 0 (LGG) or 1 (HGG)")
    grade = item.get("grade")
    if grade is not None and label is not None and GRADE_TO_LABEL.get(str(grade).upper()) != label:
        raise DatasetError(
            f"datalist {source}: case '{case}' has label {label} ({LABEL_NAMES[label]}) but grade {grade!r}; "
            "expected them to agree"
        )
    for position, (file, modality) in enumerate(zip(item["image"], order, strict=True)):
        named = modality_in_name(str(file))
        if named is not None and named != modality:
            raise DatasetError(
                f"datalist {source}: case '{case}' lists {file} as {modality} (channel {position} of "
                f"channel_order {list(order)}), but its name says {named}; expected the files in channel_order"
            )
    if needs_fold and not isinstance(item.get("fold"), int):
        raise DatasetError(f"datalist {source}: case '{case}' has fold {item.get('fold')!r}; expected an integer")


def modality_in_name(file: str) -> str | None:
    """The modality a BraTS file name ends with (``..._t1ce.nii.gz`` -> ``t1ce``), or None."""
    stem = Path(file).name.lower().removesuffix(".gz").removesuffix(".nii")
    return next((m for m in sorted(CHANNEL_ORDER, key=len, reverse=True) if stem.endswith(f"_{m}")), None)


def _inside(base: Path, relative: str, case: str, source: Path) -> str:
    """``base / relative``, refused when it leaves ``base`` (absolute, or ``..``): a datalist reads its own data."""
    full = Path(os.path.normpath(base / relative))
    if not full.is_relative_to(os.path.normpath(base)):
        raise DatasetError(
            f"datalist {source}: case '{case}' file {relative!r} lies outside the dataset folder {base}; "
            "expected a path relative to it"
        )
    return str(full)


def inference_records(input_path: str | Path, modalities: Sequence[str] = CHANNEL_ORDER) -> list[dict]:
    """Records for inference from a datalist JSON (all cases) or a BraTS-style folder (labels optional)."""
    path = Path(input_path)
    if path.is_file():
        return load_records(path, modalities=modalities, allow_outside=True)
    records = scan_cases(path, modalities=modalities, require_grades=False, allow_missing=True)
    for record in records:
        record["image"] = [str(path / p) for p in record["image"]]
    return records


def class_counts(records: Sequence[dict], num_classes: int = 2) -> list[int]:
    """Count records per label; a class with no case is an error since loss weights need it."""
    counts = [0] * num_classes
    for record in records:
        counts[int(record["label"])] += 1
    empty = [LABEL_NAMES.get(c, str(c)) for c, n in enumerate(counts) if n == 0]
    if empty:
        raise DatasetError(f"no training case of class {', '.join(empty)}: counts {counts}")
    return counts


def balancing_weights(records: Sequence[dict], num_classes: int = 2) -> list[float]:
    """Per-record inverse-frequency weights for ``WeightedRandomSampler`` (classes drawn equally often)."""
    counts = class_counts(records, num_classes)
    return [1.0 / counts[int(r["label"])] for r in records]
