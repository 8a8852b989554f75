"""``make images-local``: build the stack's images here, from Debian's packages and PyPI only, with no registry.

Three images, in order (recipes in ``images/``, one folder each):

1. ``aichat-stack/debian:bookworm``: ``debootstrap`` into a directory, then ``docker import``. Rebuilt only
   when ``images/debian/recipe`` (or this script's base step) changes: the image carries the recipe's
   sha256 as a label, which is compared before anything is done.
2. ``PROVISION_PYTHON_IMAGE`` of ``.env.local-images``: Debian's python3 + a venv with pip, and a wheelhouse.
3. ``INFLUXDB3_IMAGE`` of ``.env.local-images``: the embedded engine with influxdb:3.x-core's contract.

Containers may not reach a package index (here they do not reach PyPI), so everything is fetched on the host:
Debian packages with ``apt-get install --download-only`` inside the debootstrap tree (chroot; so dependencies
resolve against exactly the base image's packages), wheels with ``pip download`` for the image's Python and
platform, pinned to the versions of the project's ``.venv`` (the tested set). Images are then built with
``docker build --network none``. Downloads are cached under ``$AICHAT_IMAGE_CACHE`` (default
``~/.cache/aichat-stack/images``) by the sha256 of what they were made from, and Docker's layer cache does the
rest, so a second run builds nothing new and takes seconds.

Needs root (debootstrap, chroot) for the base image and its package downloads only; exits 1 with one line
saying what is missing otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"
LOCAL_ENV = ROOT / ".env.local-images"
#: bump when the base step below changes in a way that must rebuild the base image
BASE_STEP_VERSION = "1"
#: Debian bookworm's python3; the python image asserts it.
TARGET_PYTHON = "3.11"
LABEL = "org.aichat-stack.recipe-sha256"
ENGINE_LABEL = "org.aichat-stack.engine-source-sha256"
#: what the plugin venv can install offline (INFLUXDB3_PLUGIN_PACKAGES default)
PLUGIN_PACKAGES = ["requests"]


class BuildError(RuntimeError):
    """A build step failed; the message is one line for the operator."""


def log(message: str) -> None:
    print(f"images-local: {message}", flush=True)


def run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command, raise BuildError naming it when it fails."""
    proc = subprocess.run(list(cmd), **kwargs, check=False)
    if proc.returncode != 0:
        tail = ""
        if isinstance(proc.stderr, str) and proc.stderr.strip():
            tail = ": " + proc.stderr.strip().splitlines()[-1]
        raise BuildError(f"`{' '.join(cmd[:4])} ...` exited with status {proc.returncode}{tail}")
    return proc


def sha256_of(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def read_kv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (``#`` comments ignored) of a recipe or Compose env file."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def image_label(tag: str, label: str) -> str | None:
    """The image's label value, or None when the image (or label) is absent."""
    proc = subprocess.run(["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', tag],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    value = proc.stdout.strip()
    return value if value and value != "<no value>" else None


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise BuildError(f"{what} needs root (debootstrap and chroot): run `sudo make images-local`")


class Builder:
    """The three builds and their caches (see the module docstring)."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.recipe_path = IMAGES / "debian" / "recipe"
        self.recipe = read_kv(self.recipe_path)
        self.base_tag = self.recipe["TAG"]
        self.base_hash = sha256_of(self.recipe_path.read_bytes(), BASE_STEP_VERSION, platform.machine())
        self.rootfs = cache / "rootfs"
        self.local = read_kv(LOCAL_ENV)
        self._apt_updated = False

    # -- 1. base -------------------------------------------------------------------------------------------
    def base(self) -> None:
        if image_label(self.base_tag, LABEL) == self.base_hash:
            log(f"{self.base_tag}: up to date (recipe sha256 {self.base_hash[:12]})")
            return
        need_root("the Debian base image")
        if shutil.which("debootstrap") is None:
            raise BuildError("debootstrap is not installed: `make images-tools` (apt-get install debootstrap)")
        t0 = time.monotonic()
        tree = self.cache / "rootfs.new"
        shutil.rmtree(tree, ignore_errors=True)
        self.cache.mkdir(parents=True, exist_ok=True)
        log(f"{self.base_tag}: debootstrap {self.recipe['SUITE']} ({self.recipe['VARIANT']}) from {self.recipe['MIRROR']}")
        run(["debootstrap", f"--variant={self.recipe['VARIANT']}", self.recipe["SUITE"], str(tree),
             self.recipe["MIRROR"]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._clean_tree(tree)
        tar = subprocess.Popen(["tar", "-C", str(tree), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        run(["docker", "import", "--change", f"LABEL {LABEL}={self.base_hash}", "--change", "ENV LANG=C.UTF-8",
             "--change", 'CMD ["bash"]', "--message", f"debootstrap {self.recipe['SUITE']}", "-", self.base_tag],
            stdin=tar.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        tar.stdout.close()
        if tar.wait() != 0:
            raise BuildError("tar of the debootstrap tree failed")
        shutil.rmtree(self.rootfs, ignore_errors=True)
        tree.rename(self.rootfs)
        (self.cache / "rootfs.sha256").write_text(self.base_hash)
        shutil.rmtree(self.cache / "debs", ignore_errors=True)  # resolved against the old base
        log(f"{self.base_tag}: imported in {time.monotonic() - t0:.0f} s")

    @staticmethod
    def _clean_tree(tree: Path) -> None:
        """What a container image should not carry: apt lists and caches, the host's resolv.conf and hostname."""
        for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/log/*.log",
                        "tmp/*"):
            for p in tree.glob(pattern):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.name != "lock":
                    p.unlink()
        for name in ("etc/resolv.conf", "etc/hostname"):
            p = tree / name
            if p.exists() or p.is_symlink():
                p.unlink()
                p.write_text("")

    def _download_tree(self) -> Path:
        """The base image's file tree on the host, for chroot apt: kept from debootstrap, else exported."""
        stamp = self.cache / "rootfs.sha256"
        if self.rootfs.is_dir() and stamp.is_file() and stamp.read_text() == self.base_hash:
            return self.rootfs
        need_root("downloading Debian packages")
        log(f"{self.base_tag}: exporting its file tree for package downloads")
        shutil.rmtree(self.rootfs, ignore_errors=True)
        self.rootfs.mkdir(parents=True)
        cid = run(["docker", "create", self.base_tag], capture_output=True, text=True).stdout.strip()
        try:
            exp = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
            run(["tar", "-C", str(self.rootfs), "--numeric-owner", "-x"], stdin=exp.stdout)
            exp.stdout.close()
            exp.wait()
        finally:
            run(["docker", "rm", cid], capture_output=True, text=True)
        stamp.write_text(self.base_hash)
        return self.rootfs

    # -- downloads -----------------------------------------------------------------------------------------
    def debs(self, image: str) -> Path:
        """Debian packages of ``images/<image>/debs.txt`` (with dependencies missing from the base), cached."""
        wanted = (IMAGES / image / "debs.txt").read_text().split()
        key = sha256_of(" ".join(sorted(wanted)), self.base_hash)
        out = self.cache / "debs" / key
        if (out / ".complete").is_file():
            return out
        need_root("downloading Debian packages")
        tree = self._download_tree()
        shutil.copyfile("/etc/resolv.conf", tree / "etc" / "resolv.conf")
        chroot = ["chroot", str(tree)]
        if not self._apt_updated:
            log("apt-get update (in the base tree)")
            run([*chroot, "apt-get", "update", "-qq"], capture_output=True, text=True)
            self._apt_updated = True
        run([*chroot, "apt-get", "clean"], capture_output=True, text=True)
        log(f"{image}: downloading {' '.join(wanted)} and their dependencies")
        run([*chroot, "apt-get", "install", "--download-only", "--no-install-recommends", "-y", "-qq", *wanted],
            capture_output=True, text=True)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for deb in (tree / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            shutil.copy2(deb, out / deb.name)
        run([*chroot, "apt-get", "clean"], capture_output=True, text=True)
        if not any(out.glob("*.deb")):
            raise BuildError(f"{image}: apt downloaded no package for {wanted}")
        (out / ".complete").write_text("")
        return out

    def constraints(self) -> str:
        """``pip freeze`` of the running (project) interpreter: the versions the tests ran with."""
        proc = run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True)
        return "\n".join(line for line in proc.stdout.splitlines() if "==" in line) + "\n"

    def wheels(self, name: str, requirements: list[str]) -> Path:
        """Wheels of ``requirements`` for the images' CPython and this machine's architecture, cached."""
        constraints = self.constraints()
        arch = platform.machine()
        tags = [f"manylinux_2_{g}_{arch}" for g in (17, 28, 31, 34, 36)] + [f"manylinux2014_{arch}", f"linux_{arch}"]
        key = sha256_of("\n".join(requirements), constraints, TARGET_PYTHON, " ".join(tags))
        out = self.cache / "wheels" / f"{name}-{key[:16]}"
        if (out / ".complete").is_file():
            return out
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        (out / "requirements.txt").write_text("\n".join(requirements) + "\n")
        (out / "constraints.txt").write_text(constraints)
        log(f"{name}: downloading wheels for CPython {TARGET_PYTHON} ({arch}): {' '.join(requirements)}")
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(out),
               "--python-version", TARGET_PYTHON, "--implementation", "cp",
               "--abi", f"cp{TARGET_PYTHON.replace('.', '')}", "--abi", "abi3", "--abi", "none",
               "--requirement", str(out / "requirements.txt"), "--constraint", str(out / "constraints.txt")]
        for t in tags:
            cmd += ["--platform", t]
        run(cmd, capture_output=True, text=True)
        (out / "constraints.txt").unlink()
        (out / ".complete").write_text("")
        return out

    # -- docker build --------------------------------------------------------------------------------------
    def context(self, image: str, parts: dict[str, Path]) -> Path:
        """A build context: the image's folder plus downloaded parts, as hard links (cheap to remake)."""
        ctx = self.cache / "ctx" / image
        shutil.rmtree(ctx, ignore_errors=True)
        ctx.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(IMAGES / image, ctx)
        for dest, src in parts.items():
            shutil.copytree(src, ctx / dest, copy_function=_link_or_copy,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".complete"))
        return ctx

    def build(self, image: str, tag: str, ctx: Path, args: dict[str, str], target: str | None = None,
              labels: dict[str, str] | None = None) -> None:
        t0 = time.monotonic()
        cmd = ["docker", "build", "--network", "none", "--tag", tag, "--label", f"org.aichat-stack.image={image}"]
        for k, v in (labels or {}).items():
            cmd += ["--label", f"{k}={v}"]
        if target:
            cmd += ["--target", target]
        for k, v in args.items():
            cmd += ["--build-arg", f"{k}={v}"]
        log(f"{tag}: docker build images/{image}")
        proc = subprocess.run([*cmd, str(ctx)], capture_output=True, text=True, check=False,
                              env={**os.environ, "DOCKER_BUILDKIT": "0"})
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-3000:])
            raise BuildError(f"docker build of images/{image} failed (output above)")
        cached = proc.stdout.count("Using cache")
        log(f"{tag}: built in {time.monotonic() - t0:.0f} s ({cached} cached steps)")

    def python(self) -> None:
        reqs = [line.strip() for line in (ROOT / "provisioning" / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")] + PLUGIN_PACKAGES
        ctx = self.context("python", {"debs": self.debs("python"), "wheels": self.wheels("python", reqs)})
        self.build("python", self.local["PROVISION_PYTHON_IMAGE"], ctx, {"BASE_IMAGE": self.base_tag})

    def engine(self) -> None:
        import tomllib

        deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        ctx = self.context("influxdb3-embedded", {
            "debs": self.debs("influxdb3-embedded"),
            "wheels": self.wheels("engine", list(deps)),
            "engine/emulator": ROOT / "emulator",
        })
        args = {"PYTHON_IMAGE": self.local["PROVISION_PYTHON_IMAGE"]}
        # The dependency stage gets a tag of its own, so `docker image prune` keeps it as the cache it is.
        self.build("influxdb3-embedded", self.local["INFLUXDB3_IMAGE"] + "-deps", ctx, args, target="deps")
        self.build("influxdb3-embedded", self.local["INFLUXDB3_IMAGE"], ctx, args,
                   labels={ENGINE_LABEL: engine_source_sha256()})


def engine_source_sha256(root: Path = ROOT) -> str:
    """sha256 over emulator/'s Python files (path and content): the engine image carries it as a label, so a
    test can tell an image built from an older emulator/."""
    files = sorted((root / "emulator").rglob("*.py"))
    return sha256_of(*(part for f in files for part in (str(f.relative_to(root)), f.read_bytes())))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def image_sizes(tags: Sequence[str]) -> list[str]:
    """``tag: N MB`` for each present image."""
    out = []
    for tag in tags:
        proc = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", tag],
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            out.append(f"{tag}: {int(proc.stdout.strip()) / 1e6:.0f} MB")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.images_local", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("AICHAT_IMAGE_CACHE")
                                     or Path.home() / ".cache" / "aichat-stack" / "images"),
                        help="download and build-context cache (default: %(default)s)")
    args = parser.parse_args(argv)
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True,
                                                        check=False).returncode != 0:
        print("images-local: no Docker engine answers `docker info`; images need one", file=sys.stderr)
        return 1
    builder = Builder(args.cache)
    t0 = time.monotonic()
    try:
        builder.base()
        builder.python()
        builder.engine()
    except BuildError as exc:
        print(f"images-local: error: {exc}", file=sys.stderr)
        return 1
    log(f"done in {time.monotonic() - t0:.0f} s")
    for line in image_sizes([builder.base_tag, builder.local["PROVISION_PYTHON_IMAGE"], builder.local["INFLUXDB3_IMAGE"]]):
        log(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
