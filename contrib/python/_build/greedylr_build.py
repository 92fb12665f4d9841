"""The build backend of the greedylr Python package (PEP 517 and PEP 660).

The package is pure Python with no dependencies, so a wheel is a zip of greedylr/ with
the metadata beside it. Writing it here keeps `pip install contrib/python` working with
no package index (the usual backends would be fetched from one) and from a read-only
source tree (nothing is written next to the sources).
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

NAME = "greedylr"
SUMMARY = "Client of the greedylr learning-rate service, and a PyTorch scheduler using it"
REQUIRES_PYTHON = ">=3.9"
LICENSE = "MIT"
# The package's directory: this file is in _build/ beside it.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Zip entries carry this time, so that building twice gives the same wheel.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def version():
    """The __version__ written in greedylr/__init__.py."""
    with open(os.path.join(ROOT, NAME, "__init__.py"), encoding="utf-8") as source:
        found = re.search(r'^__version__ = "([^"]+)"$', source.read(), re.M)
    if not found:
        raise RuntimeError(f"{NAME}/__init__.py has no __version__")
    return found.group(1)


def metadata():
    """The METADATA (PKG-INFO) text: core metadata 2.1."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as readme:
        description = readme.read()
    return (f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {version()}\n"
            f"Summary: {SUMMARY}\nLicense: {LICENSE}\nRequires-Python: {REQUIRES_PYTHON}\n"
            "Classifier: Programming Language :: Python :: 3\n"
            "Classifier: License :: OSI Approved :: MIT License\n"
            "Provides-Extra: torch\nRequires-Dist: torch; extra == \"torch\"\n"
            "Description-Content-Type: text/markdown\n\n" + description)


def sources():
    """The package's files, as paths relative to ROOT, sorted."""
    found = []
    for directory, subdirectories, files in os.walk(os.path.join(ROOT, NAME)):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                found.append(os.path.relpath(os.path.join(directory, name), ROOT))
    return found


def dist_info():
    return f"{NAME}-{version()}.dist-info"


def wheel_text():
    return ("Wheel-Version: 1.0\nGenerator: greedylr_build\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n")


class Wheel:
    """A wheel being written: each file added is listed in RECORD with its hash."""

    def __init__(self, path):
        self.zip = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED)
        self.record = []

    def add(self, name, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        entry = zipfile.ZipInfo(name, ZIP_TIME)
        entry.external_attr = 0o644 << 16
        entry.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(entry, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self.record.append(f"{name},sha256={digest},{len(data)}")

    def close(self):
        info = dist_info()
        self.add(f"{info}/METADATA", metadata())
        self.add(f"{info}/WHEEL", wheel_text())
        lines = self.record + [f"{info}/RECORD,,"]
        entry = zipfile.ZipInfo(f"{info}/RECORD", ZIP_TIME)
        entry.external_attr = 0o644 << 16
        self.zip.writestr(entry, "\n".join(lines) + "\n")
        self.zip.close()


def wheel_name():
    return f"{NAME}-{version()}-py3-none-any.whl"


# ---- PEP 517 ---------------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    """Writes the .dist-info directory alone; returns its name."""
    target = os.path.join(metadata_directory, dist_info())
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "METADATA"), "w", encoding="utf-8") as out:
        out.write(metadata())
    with open(os.path.join(target, "WHEEL"), "w", encoding="utf-8") as out:
        out.write(wheel_text())
    return dist_info()


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    """Writes the wheel into wheel_directory; returns its file name."""
    wheel = Wheel(os.path.join(wheel_directory, wheel_name()))
    for path in sources():
        with open(os.path.join(ROOT, path), "rb") as source:
            wheel.add(path.replace(os.sep, "/"), source.read())
    wheel.close()
    return wheel_name()


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """A wheel whose .pth file puts this source tree on sys.path (pip install -e)."""
    wheel = Wheel(os.path.join(wheel_directory, wheel_name()))
    wheel.add(f"{NAME}.pth", ROOT + "\n")
    wheel.close()
    return wheel_name()


def build_sdist(sdist_directory, config_settings=None):
    """Writes NAME-VERSION.tar.gz (the package, this backend, PKG-INFO); returns its name."""
    base = f"{NAME}-{version()}"
    files = ["pyproject.toml", "README.md", "_build/greedylr_build.py"] + sources()
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) \
            as tar:
        for path in files:
            tar.add(os.path.join(ROOT, path), arcname=f"{base}/{path}", recursive=False)
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        data = metadata().encode("utf-8")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return name
