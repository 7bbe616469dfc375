"""Making the plugin available to the App, beside the user's own plugins.

FiftyOne finds plugins in one folder (``fo.config.plugins_dir``, ``FIFTYONE_PLUGINS_DIR``), walking it and following
links; it cannot take several. So ``fabricdata app`` points the App at a folder of links: one to the plugin shipped
in this package, and one to each entry of the user's configured plugins folder (untouched; a folder that is itself
one plugin is linked whole). The folder is named by a hash of what it links and built once under a temporary name,
then renamed into place, so two ``fabricdata app`` at once never see it half made; its ``.fabricdata-user-dir``
records the user's folder, so a plugins folder that is already one of ours (an exported ``FIFTYONE_PLUGINS_DIR``)
resolves to the user's own again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

#: the plugin's name in fiftyone.yml; operator URIs are ``PLUGIN_NAME/<operator>``
PLUGIN_NAME = "@fabricdata/fabricdata"
#: the environment variable that tells the plugin where the runs are (``fabricdata app --runs``)
RUNS_ENV = "FABRICDATA_RUNS"
_LINK = "fabricdata"
_USER_FILE = ".fabricdata-user-dir"
_METADATA = ("fiftyone.yml", "fiftyone.yaml")


def plugin_folder() -> Path:
    """The plugin folder shipped in the package (``fiftyone.yml`` + ``__init__.py``)."""
    return Path(__file__).resolve().parent / "plugin"


def uri(operator: str) -> str:
    """``writeback`` -> ``@fabricdata/fabricdata/writeback``."""
    return f"{PLUGIN_NAME}/{operator}"


def enable(runs: Path | None = None) -> Path:
    """Point FiftyOne (this process, and the App server it starts) at a plugins folder holding our plugin and the
    user's; with ``runs``, tell the plugin where the runs are. Returns the folder.

    Raises:
        OSError: the folder cannot be made (no space, no permission).
    """
    import fiftyone as fo

    base = Path(fo.config.default_dataset_dir) / "fabricdata" / "app-plugins"
    folder = merged_plugins_dir(fo.config.plugins_dir, base)
    os.environ["FIFTYONE_PLUGINS_DIR"] = str(folder)
    fo.config.plugins_dir = str(folder)
    if runs is not None:
        os.environ[RUNS_ENV] = str(runs.resolve())
    return folder


def user_plugins_dir(configured: str | None, base: Path) -> Path | None:
    """The user's own plugins folder: ``configured``, or the one recorded in it when it is one of ours."""
    if not configured:
        return None
    folder = Path(configured)
    recorded = folder / _USER_FILE
    if folder.resolve().parent == base.resolve() and recorded.is_file():
        text = recorded.read_text(encoding="utf-8").strip()
        return Path(text) if text else None
    return folder


def merged_plugins_dir(configured: str | None, base: Path) -> Path:
    """The folder of links under ``base`` for the plugins folder ``configured`` (made once, then reused)."""
    user = user_plugins_dir(configured, base)
    links = _links(user)
    key = hashlib.sha256(repr(sorted((k, str(v)) for k, v in links.items())).encode()).hexdigest()[:16]
    target = base / key
    if (target / _LINK).exists():
        return target
    base.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=base))
    for name, source in links.items():
        (stage / name).symlink_to(source, target_is_directory=True)
    (stage / _USER_FILE).write_text(str(user or ""), encoding="utf-8")
    try:
        stage.rename(target)
    except OSError:  # another fabricdata app made it meanwhile (or a stale one is in the way): take that one
        shutil.rmtree(stage, ignore_errors=True)
        if not (target / _LINK).exists():
            raise
    return target


def _links(user: Path | None) -> dict[str, Path]:
    """Link name -> what it points at: our plugin, then the user's folder (whole when it is one plugin) or its
    visible entries (a name clashing with ours is linked as ``NAME-user``)."""
    links = {_LINK: plugin_folder()}
    if user is None or not user.is_dir():
        return links
    if any((user / name).is_file() for name in _METADATA):
        links["user-plugins"] = user.resolve()
        return links
    for entry in sorted(user.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        links[entry.name if entry.name != _LINK else f"{_LINK}-user"] = entry.resolve()
    return links
