"""The model zoo's checks that need no bundle code: files, versions, pins, schema, paths, sizes, formatting.

Each function takes the bundle folder and returns a :class:`CheckResult`. The rules are the ones the
zoo's CI (``ci/verify_bundle.py``, ``ci/get_bundle_requirements.py``), its ``CONTRIBUTING.md`` and its
code-format job apply to a bundle pull request, at the zoo commit ``custom_data.ZOO_COMMIT``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..components.validation import one_line
from .custom_data import exempt
from .results import CheckResult

__all__ = [
    "LARGE_FILES_NAME",
    "MAX_FILE_BYTES",
    "check_absolute_paths",
    "check_changelog",
    "check_file_sizes",
    "check_files",
    "check_formatting",
    "check_metadata_schema",
    "check_pins",
    "download_large_files",
    "file_hash",
    "read_large_files",
]

HERE = Path(__file__).resolve().parent
SCHEMA_DIR = HERE / "schema"
RELEASES_FILE = HERE / "python310_releases.json"
LARGE_FILES_NAME = "large_files.yml"
MAX_FILE_BYTES = 25 * 1024 * 1024  # CONTRIBUTING.md: no single file over 25 MB; larger ones go in large_files.yml
HASH_TYPES = ("md5", "sha1", "sha256", "sha512")
NECESSARY_FILES = ("configs/metadata.json", "LICENSE")
PREFERRED_FILES = ["models/model.pt", "configs/inference.json"]
PLACEHOLDER_HOST = "REPLACE-WITH-YOUR-HOSTING.invalid"  # export_bundle.py's URL when none is given
PIN_FIELDS = {"monai_version": "monai", "pytorch_version": "torch", "numpy_version": "numpy"}
# the zoo's flake8 settings (setup.cfg): E501 is replaced by bugbear's B950 (line length + 10 %)
FLAKE8_ARGS = (
    "--max-line-length=120",
    "--select=B,C,E,F,N,P,T4,W,B9",
    "--ignore=E203,E501,E741,W503,W504,C408,N812,B023,B905,B028,B907,C419",
)
ABSOLUTE_LITERAL = re.compile(r"""(?<!\+\s)(?<!\+)(['"])(/[^'"]*|~[^'"]*|[A-Za-z]:[\\/][^'"]*)\1""")


def _metadata(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text())


def file_hash(path: Path, hash_type: str = "sha256") -> str:
    digest = hashlib.new(hash_type)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_large_files(bundle: Path) -> list[dict]:
    """Entries of ``large_files.yml`` (``path``, ``url``, ``hash_val``, ``hash_type``); ``[]`` when absent."""
    path = bundle / LARGE_FILES_NAME
    if not path.is_file():
        return []
    import yaml

    content = yaml.safe_load(path.read_text()) or {}
    entries = content.get("large_files") if isinstance(content, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a top-level 'large_files:' list")
    return entries


def _large_file_problems(bundle: Path, entries: list[dict]) -> list[str]:
    problems = []
    for i, entry in enumerate(entries):
        missing = [k for k in ("path", "url") if not entry.get(k)]
        if missing:
            problems.append(f"large_files[{i}] lacks {missing}")
            continue
        hash_type = entry.get("hash_type")
        if entry.get("hash_val") and hash_type not in HASH_TYPES:
            problems.append(f"large_files[{i}] hash_type {hash_type!r} is not one of {list(HASH_TYPES)}")
            continue
        local = bundle / entry["path"]
        if local.is_file() and entry.get("hash_val") and file_hash(local, hash_type) != entry["hash_val"]:
            problems.append(f"{entry['path']}: its {hash_type} differs from large_files.yml's hash_val")
    return problems


def download_large_files(bundle: Path, entries: list[dict], target: Path) -> list[str]:
    """Download every listed file into ``target`` as the zoo's CI does first (``monai.apps.download_url``,
    hash checked), whether or not the bundle folder holds a copy: a pull request cannot carry it."""
    from monai.apps.utils import download_url

    problems = []
    for entry in entries:
        if PLACEHOLDER_HOST in str(entry["url"]):
            problems.append(f"{entry['path']}: url is export_bundle.py's placeholder; re-export with --url")
            continue
        if not entry.get("hash_val"):
            problems.append(f"{entry['path']}: no hash_val (a download could not be checked)")
            continue
        try:
            download_url(
                url=entry["url"],
                filepath=target / entry["path"],
                hash_val=entry["hash_val"],
                hash_type=entry.get("hash_type") or "md5",
                progress=False,
            )
        except Exception as err:
            problems.append(f"Download large files in {bundle} error: {entry['url']}: {one_line(err)[:200]}")
    return problems


def check_files(bundle: Path) -> CheckResult:
    """As the zoo: large files downloaded (hash checked) first; then LICENSE, metadata and, unless on the
    zoo's ``exclude_verify_preferred_files_list``, ``models/model.pt`` and the inference config."""
    try:
        entries = read_large_files(bundle)
    except ValueError as err:
        return CheckResult("files", False, str(err))
    problems = _large_file_problems(bundle, entries)
    with tempfile.TemporaryDirectory(prefix="large_files_") as scratch:
        problems += download_large_files(bundle, [e for e in entries if e.get("path") and e.get("url")], Path(scratch))
    if problems:
        return CheckResult("files", False, "; ".join(problems))
    downloaded = {e["path"] for e in entries}
    required = list(NECESSARY_FILES)
    exemption = exempt(bundle.name, "exclude_verify_preferred_files_list")
    if not exemption:
        required += PREFERRED_FILES
    missing = [f for f in required if not (bundle / f).is_file() and f not in downloaded]
    if missing:
        hint = " (train, then scripts/export_bundle.py publishes it)" if "models/model.pt" in missing else ""
        return CheckResult("files", False, f"necessary file {missing[0]} is not existing{hint}")
    weights = f"no models/model.pt (exclude_verify_preferred_files_list: {exemption})" if exemption else ""
    if not weights:
        weights = "models/model.pt " + ("downloaded, hash checked" if "models/model.pt" in downloaded else "shipped")
    return CheckResult("files", True, f"{', '.join(required)} present; {weights}")


def check_changelog(bundle: Path) -> CheckResult:
    """The version is a MAJOR.MINOR.PATCH string with its own changelog entry."""
    meta = _metadata(bundle)
    version = meta.get("version")
    if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+\.\d+", version):
        return CheckResult("changelog", False, f"metadata version {version!r} is not MAJOR.MINOR.PATCH")
    if version not in (meta.get("changelog") or {}):
        return CheckResult("changelog", False, f"version {version} has no entry in metadata.json's changelog")
    return CheckResult("changelog", True, f"version {version} is in the changelog")


def check_pins(bundle: Path) -> CheckResult:
    """Every pinned version has a release installable on Python 3.10, where the zoo's CPU job installs them."""
    meta = _metadata(bundle)
    table = json.loads(RELEASES_FILE.read_text())
    releases = table["versions"]
    pins = {package: meta.get(field) for field, package in PIN_FIELDS.items()}
    for field in ("required_packages_version", "optional_packages_version"):
        pins.update(meta.get(field) or {})
    problems = []
    for package, version in pins.items():
        if not version:
            problems.append(f"{package}: no version pinned")
        elif package not in releases:
            problems.append(f"{package}=={version}: not in {RELEASES_FILE.name}; add its Python 3.10 releases")
        elif str(version) not in releases[package]:
            problems.append(
                f"{package}=={version} has no Python {table['python_version']} release "
                f"(newest there: {releases[package][0]})"
            )
    if problems:
        return CheckResult("pins", False, "; ".join(problems))
    return CheckResult("pins", True, f"{len(pins)} pins installable on Python {table['python_version']}")


def check_metadata_schema(bundle: Path) -> CheckResult:
    """``monai.bundle.verify_metadata`` against the vendored copy of the schema the metadata names."""
    from monai.bundle import verify_metadata

    url = _metadata(bundle).get("schema", "")
    vendored = SCHEMA_DIR / url.rsplit("/", 1)[-1]
    if not url or not vendored.is_file():
        return CheckResult("metadata schema", False, f"schema {url!r} is not vendored under {SCHEMA_DIR}")
    with tempfile.TemporaryDirectory() as tmp:
        schema_copy = Path(tmp) / "schema.json"
        shutil.copy(vendored, schema_copy)  # an existing file is used as is: nothing is downloaded
        try:
            verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(schema_copy))
        except ValueError as err:
            return CheckResult("metadata schema", False, " ".join(str(err).split())[:300])
    return CheckResult("metadata schema", True, f"valid against {vendored.name}")


def _config_strings(value, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _config_strings(item, f"{where}#{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _config_strings(item, f"{where}#{i}")
    elif isinstance(value, str):
        yield where, value


def _is_absolute(text: str) -> bool:
    if text.startswith("$"):
        return bool(ABSOLUTE_LITERAL.search(text))  # a literal not appended to another path
    return text.startswith(("/", "~")) or bool(re.match(r"[A-Za-z]:[\\/]", text))


def check_absolute_paths(bundle: Path) -> CheckResult:
    """No config value is an absolute path (a string such as ``/workspace/...``, or such a literal in an expression)."""
    found = []
    for config in sorted((bundle / "configs").glob("*.json")):
        content = json.loads(config.read_text())
        found += [f"{config.name}: {where.lstrip('#')} = {text!r}" for where, text in _config_strings(content, "")
                  if _is_absolute(text)]  # fmt: skip
    if found:
        return CheckResult("absolute paths", False, "; ".join(found))
    return CheckResult("absolute paths", True, "none in configs/*.json")


def _bundle_files(bundle: Path) -> Iterator[Path]:
    for path in sorted(bundle.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


def check_file_sizes(bundle: Path) -> CheckResult:
    """No file over 25 MB, unless ``large_files.yml`` lists it (then the zoo stores it elsewhere)."""
    listed = {e.get("path") for e in read_large_files(bundle)}
    too_big = [
        f"{p.relative_to(bundle).as_posix()} ({p.stat().st_size / 2**20:.1f} MB)"
        for p in _bundle_files(bundle)
        if p.stat().st_size > MAX_FILE_BYTES and p.relative_to(bundle).as_posix() not in listed
    ]
    if too_big:
        return CheckResult("file sizes", False, f"over 25 MB and not in {LARGE_FILES_NAME}: {too_big}")
    return CheckResult("file sizes", True, "no file over 25 MB outside large_files.yml")


def _tool(args: list[str], cwd: Path) -> tuple[bool, str]:
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip().splitlines()
    return result.returncode == 0, "; ".join(output[:6])


_HOOK_MAIN = "import sys; from pre_commit_hooks.{hook} import main; sys.exit(main(sys.argv[1:]))"


def check_formatting(bundle: Path) -> CheckResult:
    """black 120, isort (black profile), flake8 with the zoo's plugins, check-docstring-first, pretty JSON."""
    python_files = [str(p.relative_to(bundle)) for p in _bundle_files(bundle) if p.suffix == ".py"]
    json_files = [str(p.relative_to(bundle)) for p in _bundle_files(bundle) if p.suffix == ".json"]
    tools = {
        "black": ["-m", "black", "--check", "--skip-magic-trailing-comma", "--line-length", "120", "."],
        "isort": ["-m", "isort", "--check-only", "--profile", "black", "--line-length", "120", "."],
        "flake8": ["-m", "flake8", *FLAKE8_ARGS, "."],
        # the hook's module has no __main__ guard: `python -m` would import it and check nothing
        "check-docstring-first": ["-c", _HOOK_MAIN.format(hook="check_docstring_first"), *python_files],
        "pretty-format-json": [
            "-m",
            "pre_commit_hooks.pretty_format_json",
            "--no-sort-keys",
            "--indent=4",
            *json_files,
        ],
    }
    failed = []
    for name, args in tools.items():
        passed, output = _tool(args, bundle)
        if not passed:
            failed.append(f"{name}: {output or 'failed'}")
    if failed:
        return CheckResult("formatting", False, " | ".join(failed))
    return CheckResult("formatting", True, f"{', '.join(tools)} clean")
