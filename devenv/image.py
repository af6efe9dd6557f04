"""The operator image, built without Docker, a registry or a pulled base image.

    python3 devenv/image.py build | name

Three layers, each committed with buildah (its default storage) and reused while its inputs are
unchanged (the key is a hash of them, in the tag of localhost/qdrant-collection-operator-<layer>):

1. rootfs: Debian (the host's suite and apt sources) with python3 and a non-root user, by mmdebstrap;
   no apt lists or caches, no docs except copyright files;
2. deps:   /opt/venv with the operator's dependencies, wheels downloaded here from PyPI for the
   rootfs' Python and glibc and installed offline (pip runs from its wheel and is not installed);
3. app:    the operator's wheel, entrypoint, user 65532, OCI labels. Rebuilt every time.

The result is `localhost/qdrant-collection-operator:<version>` (`buildah push` it to a registry) and an
OCI layout at `.devenv/image/oci` (tag `<version>`). Standard library only; needs root, buildah and
mmdebstrap. Temporary files and pip's wheel go to ~/.cache/collection-operator/image.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "collection-operator" / "image"
STATE = Path(os.environ.get("DEVENV_STATE_DIR", REPO / ".devenv"))
OCI_LAYOUT = STATE / "image" / "oci"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NAME = PROJECT["name"]
VERSION = PROJECT["version"]
IMAGE = f"{NAME}:{VERSION}"  # manifests/base/deployment.yaml names exactly this
UID = 65532
VENV = "/opt/venv"
ENTRYPOINT = f"{VENV}/bin/{NAME}"
# The suite and mirrors the machine's apt serves (deb822, or the one-line format of older installs).
SOURCES = next(
    (p for p in map(Path, ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]) if p.exists()),
    Path("/etc/apt/sources.list"),
)
PACKAGES = ["python3", "libstdc++6"]  # libstdc++: manylinux wheels (numpy, grpcio) link it
TRIM = ["find", VENV, "-depth", "-type", "d", "-path", "*/site-packages/*/tests", "-exec", "rm", "-rf", "{}", "+"]
DROP = ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*", "/usr/share/lintian/*"]


def log(msg: str) -> None:
    print(f"[image] {msg}", file=sys.stderr, flush=True)


def run(*cmd: str, capture: bool = False) -> str:
    proc = subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE if capture else None)
    return proc.stdout.strip() if capture else ""


def buildah(*args: str, capture: bool = True) -> str:
    return run("buildah", *args, capture=capture)


def key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def working_container(base: str) -> Iterator[str]:
    """A container from base, to be committed with --rm; removed if the build fails."""
    name = buildah("from", base)
    try:
        yield name
    except BaseException:
        buildah("rm", name)
        raise


def cached(ref: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type=image", ref], capture_output=True).returncode == 0


def suite() -> str:
    found = re.search(r"^Suites:\s*(\S+)|^deb\s+(?:\[[^]]*\]\s+)?\S+\s+(\S+)", SOURCES.read_text(), re.M)
    assert found, f"no suite in {SOURCES}"
    return found.group(1) or found.group(2)


def rootfs() -> str:
    """Layer 1: Debian with python3 and the user, by mmdebstrap (minutes; cached)."""
    mmdebstrap = run("mmdebstrap", "--version", capture=True)
    passwd = f"nonroot:x:{UID}:{UID}:nonroot:/home/nonroot:/usr/sbin/nologin"
    hooks = [
        f'echo "{passwd}" >> "$1/etc/passwd"',
        f'echo "nonroot:x:{UID}:" >> "$1/etc/group"',
        f'install -d -o {UID} -g {UID} "$1/home/nonroot"',
        'rm -rf "$1"/var/log/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old',
    ]
    ref = f"localhost/{NAME}-rootfs:{key(mmdebstrap, SOURCES.read_text(), PACKAGES, DROP, hooks)}"
    if cached(ref):
        return ref
    log(f"building the Debian {suite()} root filesystem with mmdebstrap (minutes, once) ...")
    dpkg = [f"--dpkgopt=path-exclude={p}" for p in DROP] + ["--dpkgopt=path-include=/usr/share/doc/*/copyright"]
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        tar = f"{tmp}/rootfs.tar"
        run(
            "mmdebstrap",
            "--quiet",
            "--variant=essential",
            f"--include={','.join(PACKAGES)}",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            *dpkg,
            *[f"--customize-hook={h}" for h in hooks],
            suite(),
            tar,
            str(SOURCES),
        )
        with working_container("scratch") as container:
            buildah("add", container, tar, "/")
            buildah("commit", "--rm", "--quiet", container, ref)
    return ref


def pip_wheel() -> Path:
    """pip's own wheel: runs pip inside the image without installing it there."""
    wheels = CACHE / "pip"
    if not list(wheels.glob("pip-*.whl")):
        run(
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(wheels),
            "pip",
        )
    return sorted(wheels.glob("pip-*.whl"))[-1]


def in_image(container: str, wheels: Path, *cmd: str) -> str:
    return buildah(
        "run",
        "--isolation=chroot",
        "--network=host",
        f"--volume={wheels}:/wheels:ro",
        f"--volume={pip_wheel()}:/pip.whl:ro",
        container,
        "--",
        *cmd,
    )


def manylinux(glibc: str, machine: str) -> list[str]:
    """The wheel platforms a glibc of that version runs (pip does not widen --platform by itself)."""
    major, minor = map(int, glibc.split("_"))
    legacy = [f"manylinux{name}_{machine}" for name in ("1", "2010", "2014")]
    return [f"manylinux_{major}_{m}_{machine}" for m in range(5, minor + 1)] + legacy


def deps(base: str) -> str:
    """Layer 2: /opt/venv with the dependencies (cached per dependency list and base)."""
    with working_container(base) as probe:
        python, glibc, machine = buildah(
            "run",
            "--isolation=chroot",
            probe,
            "--",
            "python3",
            "-c",
            "import platform, sys; print(f'{sys.version_info[0]}{sys.version_info[1]}',"
            " platform.libc_ver()[1].replace('.', '_'), platform.machine())",
        ).split()
        buildah("rm", probe)
    ref = f"localhost/{NAME}-deps:{key(base, PROJECT['dependencies'], pip_wheel().name, TRIM)}"
    if cached(ref):
        return ref
    log(f"downloading the dependencies for cp{python} manylinux_{glibc}_{machine} and installing them ...")
    with tempfile.TemporaryDirectory(dir=CACHE) as wheels:
        run(
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "-d",
            wheels,
            *[f"--platform={p}" for p in manylinux(glibc, machine)],
            f"--python-version={python}",
            "--implementation=cp",
            f"--abi=cp{python}",
            *PROJECT["dependencies"],
        )
        with working_container(base) as container:
            in_image(container, Path(wheels), "python3", "-m", "venv", "--without-pip", VENV)
            pip_install(container, Path(wheels), "--find-links=/wheels", *PROJECT["dependencies"])
            in_image(container, Path(wheels), *TRIM)  # the packages' own test suites (17 MB)
            buildah("commit", "--rm", "--quiet", container, ref)
    return ref


def pip_install(container: str, wheels: Path, *args: str) -> None:
    """pip (from the mounted wheel) inside the image's venv, offline: only the wheels in /wheels."""
    pip = [f"{VENV}/bin/python", "/pip.whl/pip", "install", "--quiet", "--no-index", "--no-cache-dir"]
    in_image(container, wheels, *pip, *args)


def labels() -> dict[str, str]:
    revision = run("git", "-C", str(REPO), "rev-parse", "HEAD", capture=True)
    if run("git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", capture=True):
        revision += "-dirty"
    remote = subprocess.run(["git", "-C", str(REPO), "remote", "get-url", "origin"], capture_output=True, text=True)
    source = PROJECT.get("urls", {}).get("Source") or remote.stdout.strip() or "unknown"
    oci = {
        "title": NAME,
        "description": PROJECT["description"],
        "version": VERSION,
        "revision": revision,
        "licenses": PROJECT["license"],
        "source": source,
    }
    return {f"org.opencontainers.image.{k}": v for k, v in oci.items()}


def sources() -> str:
    """A hash of what goes into the operator's wheel."""
    package = [p for p in (REPO / "operator").rglob("*") if p.is_file() and "__pycache__" not in str(p)]
    files = sorted([p for p in package if ".egg-info" not in str(p)] + [REPO / "pyproject.toml", REPO / "README.md"])
    return key([(str(p.relative_to(REPO)), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files])


def app(base: str) -> str:
    """Layer 3: the operator's wheel, and the image's configuration (cached per source tree and labels)."""
    config = [f"--label={k}={v}" for k, v in labels().items()]
    config += [
        "--env=PATH=/opt/venv/bin:/usr/bin:/bin",
        "--env=PYTHONDONTWRITEBYTECODE=1",
        "--env=PYTHONUNBUFFERED=1",
        f"--user={UID}:{UID}",
        "--workingdir=/home/nonroot",
        "--port=8080",
        "--port=8081",
        f"--entrypoint={json.dumps([ENTRYPOINT])}",
        '--cmd=["run", "--all-namespaces"]',
    ]
    ref = f"localhost/{NAME}-app:{key(base, sources(), config)}"
    if not cached(ref):
        with tempfile.TemporaryDirectory(dir=CACHE) as wheels, working_container(base) as container:
            run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, str(REPO))
            wheel = next(Path(wheels).glob("*.whl")).name
            pip_install(container, Path(wheels), "--no-deps", f"/wheels/{wheel}")
            buildah("config", *config, container)
            buildah("commit", "--rm", "--quiet", container, ref)
    buildah("tag", ref, f"localhost/{IMAGE}")
    return ref


def prune(keep: list[str]) -> None:
    """Drop cached layers of earlier inputs, and images no tag names any more."""
    for line in buildah("images", "--format={{.Name}}:{{.Tag}}").splitlines():
        if line.startswith(f"localhost/{NAME}-") and line not in keep:
            buildah("rmi", line)  # only the tag, while another name holds the image
    buildah("rmi", "--prune")


def layout_manifest(tag: str) -> dict | None:
    """The manifest of tag in the OCI layout, if there is one."""
    index = OCI_LAYOUT / "index.json"
    for entry in json.loads(index.read_text())["manifests"] if index.exists() else []:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return json.loads((OCI_LAYOUT / "blobs/sha256" / entry["digest"].split(":")[1]).read_text())
    return None


def export(image: str) -> dict:
    """The OCI layout holds exactly this image (compressing the layers takes a while: skipped when it does)."""
    image_id = "sha256:" + buildah("inspect", "--type=image", "--format={{.FromImageID}}", image)
    manifest = layout_manifest(VERSION)
    if manifest is None or manifest["config"]["digest"] != image_id:
        shutil.rmtree(OCI_LAYOUT, ignore_errors=True)  # no blobs of earlier builds left behind
        OCI_LAYOUT.parent.mkdir(parents=True, exist_ok=True)
        buildah("push", "--quiet", image, f"oci:{OCI_LAYOUT}:{VERSION}")
        manifest = layout_manifest(VERSION)
    assert manifest is not None
    return manifest


def build() -> str:
    CACHE.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    base = rootfs()
    with_deps = deps(base)
    built = app(with_deps)
    image = f"localhost/{IMAGE}"
    manifest = export(image)
    prune([base, with_deps, built])
    compressed = sum(layer["size"] for layer in manifest["layers"])
    unpacked = buildah("images", "--format={{.Size}}", image).splitlines()[0]
    log(
        f"{image} in {time.monotonic() - start:.0f} s: {compressed / 1e6:.0f} MB compressed, {unpacked} unpacked; "
        f"OCI layout {OCI_LAYOUT}:{VERSION}"
    )
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "name"])
    args = parser.parse_args()
    print(build() if args.command == "build" else IMAGE)


if __name__ == "__main__":
    main()
