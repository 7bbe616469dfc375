"""The suite sees only its own database: a user's running FiftyOne (its own database service, as `fabricdata app`
or a notebook keeps one) is invisible here, and nothing here lands there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

USER_SESSION = """
import sys
import fiftyone as fo
fo.Dataset("users-own-fabric", persistent=True)
print("ready", sorted(fo.list_datasets()), flush=True)
sys.stdin.readline()  # stay connected (the service lives while a client does) until the test is done
print("at the end", sorted(fo.list_datasets()), flush=True)
"""


def test_a_users_running_fiftyone_is_invisible_to_the_suite(tmp_path: Path, name: str) -> None:
    import fiftyone as fo

    assert os.environ["FIFTYONE_DATABASE_URI"].startswith("mongodb://127.0.0.1:")  # tests/mongod.py
    env = {key: value for key, value in os.environ.items() if key != "FIFTYONE_DATABASE_URI"}
    env.update({"HOME": str(tmp_path / "user"), "FIFTYONE_DATABASE_DIR": str(tmp_path / "user" / "db")})
    (tmp_path / "user").mkdir()
    user = subprocess.Popen(
        [sys.executable, "-c", USER_SESSION], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert user.stdout is not None and user.stdin is not None
        assert user.stdout.readline().startswith("ready ['users-own-fabric']")
        fo.Dataset(name, persistent=True)  # the suite's own, while the user's service runs
        assert "users-own-fabric" not in fo.list_datasets() and name in fo.list_datasets()
        user.stdin.write("done\n")
        user.stdin.flush()
        assert user.stdout.readline().strip() == "at the end ['users-own-fabric']"  # nothing of ours there
    finally:
        if user.poll() is None:
            user.communicate(timeout=120)
