"""images/ recipes and scripts/images_local.py without Docker: one folder per image with its one-line purpose,
pinned tags, the base rebuilt only when its recipe changes, a clear line where no engine answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from scripts import images_local
from tests.docker_support import local_images

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"


def test_images_each_folder_opens_with_one_comment_line_and_pins_its_tags():
    folders = sorted(p.name for p in IMAGES.iterdir() if p.is_dir())
    assert folders == ["debian", "influxdb3-embedded", "python"]
    for name in folders:
        recipe = IMAGES / name / ("recipe" if name == "debian" else "Dockerfile")
        first = recipe.read_text().splitlines()[0]
        assert first.startswith("# ") and ("stands in for" in first or "contract" in first), (name, first)
        assert not re.search(r":latest\b", recipe.read_text())
    for tag in [*local_images().values(), images_local.read_kv(IMAGES / "debian" / "recipe")["TAG"]]:
        assert re.fullmatch(r"aichat-stack/[a-z0-9-]+:[0-9a-z.-]+", tag) and not tag.endswith(":latest"), tag


def test_images_local_base_hash_changes_with_the_recipe_only(tmp_path, monkeypatch):
    a = images_local.Builder(tmp_path)
    assert images_local.Builder(tmp_path / "other").base_hash == a.base_hash  # not the cache dir, not time
    recipe = tmp_path / "recipe"
    recipe.write_text((IMAGES / "debian" / "recipe").read_text() + "# changed\n")
    monkeypatch.setattr(images_local, "IMAGES", tmp_path / "images")
    (tmp_path / "images" / "debian").mkdir(parents=True)
    (tmp_path / "images" / "debian" / "recipe").write_text(recipe.read_text())
    assert images_local.Builder(tmp_path).base_hash != a.base_hash


def test_images_local_without_a_docker_engine_says_so_and_exits_1(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    proc = subprocess.run([sys.executable, "-m", "scripts.images_local", "--cache", str(tmp_path / "c")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "images-local: no Docker engine answers `docker info`; images need one"
