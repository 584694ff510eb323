#!/usr/bin/env python3
"""Writes a container image as a Docker-format image archive, without a daemon or a base image.

No container registry is reachable from the machines the lab is tested on, so every image the
kind runtime runs is assembled here from files already on the machine (the pinned binaries the
local runtime uses, or the ones scripts/install-kind.sh builds). The archive holds
`manifest.json`, one config JSON and one layer tar; `kind load image-archive`, `ctr images
import`, `podman load` and `docker load` all read it.

    mkimage.py --tag ztlab/opa:dev --out opa.tar --bin /path/to/opa:/usr/local/bin/opa \
        --entrypoint /usr/local/bin/opa --user 65532

--bin copies an ELF program and every shared library `ldd` names for it (so dynamically linked
programs such as Envoy, PostgreSQL or the Rust services run without a distribution inside);
--file copies one file, --tree a directory. The layer is reproducible: sorted, owned by root,
dated 0, so the same inputs give the same image ID and a rebuild is a no-op for the node.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import PurePosixPath

NONROOT_UID = 65532


class ImageError(Exception):
    """A bad argument or input; its text names the option at fault."""


def split_spec(option: str, spec: str, sysroot: str | None = None) -> tuple[str, str]:
    """`SRC[:DEST]` -> (src, dest); DEST defaults to SRC. With a sysroot, SRC is inside it."""
    src, _, dest = spec.partition(":")
    dest = dest or src
    if not src or not dest.startswith("/"):
        raise ImageError(f"{option} {spec!r}: expected SRC[:/absolute/dest]")
    if not os.path.exists((sysroot or "") + src):
        raise ImageError(f"{option} {spec!r}: {src} does not exist")
    return src, dest


def shared_libraries(program: str, sysroot: str | None) -> list[str]:
    """The shared libraries (and the dynamic loader) that `ldd` lists for `program`; none for a
    static program. With a sysroot, `program` and the libraries are paths inside it, and `ldd`
    runs there (chroot)."""
    cmd = ["chroot", sysroot, "ldd", program] if sysroot else ["ldd", program]
    out = subprocess.run(cmd, capture_output=True, text=True)
    text = out.stdout + out.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if out.returncode != 0:
        raise ImageError(f"--bin {program}: ldd failed: {text.strip()}")
    libs = []
    for line in out.stdout.splitlines():
        if "not found" in line:
            raise ImageError(f"--bin {program}: a library is missing: {line.strip()}")
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


class Layer:
    """The files of the image's one layer, by path inside the image."""

    def __init__(self, sysroot: str | None = None, strip: bool = False) -> None:
        self.entries: dict[str, tuple[str, str | None, int]] = {}  # dest -> (kind, src, mode)
        self.sysroot = sysroot
        self.strip = strip

    def add_dir(self, dest: str, mode: int = 0o755) -> None:
        parts = PurePosixPath(dest).parts[1:]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = ("dir", None, mode if i == len(parts) else 0o755)

    def add_file(self, src: str, dest: str) -> None:
        self.add_dir(str(PurePosixPath(dest).parent))
        st = os.stat(src)  # follows symlinks: the image gets the file itself
        self.entries[dest] = ("file", src, stat.S_IMODE(st.st_mode))

    def add_bytes(self, dest: str, data: bytes, mode: int = 0o644) -> None:
        self.add_dir(str(PurePosixPath(dest).parent))
        self.entries[dest] = ("bytes", data.decode("latin-1"), mode)

    def add_symlink(self, dest: str, target: str) -> None:
        self.add_dir(str(PurePosixPath(dest).parent))
        self.entries[dest] = ("symlink", target, 0o777)

    def add_tree(self, src: str, dest: str) -> None:
        for root, dirs, files in os.walk(src):
            dirs.sort()
            rel = os.path.relpath(root, src)
            base = dest if rel == "." else f"{dest.rstrip('/')}/{rel}"
            self.add_dir(base, stat.S_IMODE(os.stat(root).st_mode))
            for name in sorted(files):
                path = os.path.join(root, name)
                if os.path.islink(path):
                    self.add_symlink(f"{base}/{name}", os.readlink(path))
                else:
                    self.add_file(path, f"{base}/{name}")

    def add_program(self, src: str, dest: str) -> None:
        """A program and its shared libraries; with a sysroot, `src` is a path inside it."""
        root = self.sysroot or ""
        if self.strip:
            # Symbols and debug data are much of an unstripped Go or Rust binary; the image needs none.
            with tempfile.TemporaryDirectory(prefix="mkimage-") as tmp:
                out = os.path.join(tmp, "stripped")
                res = subprocess.run(["strip", "--strip-all", "-o", out, root + src], capture_output=True, text=True)
                if res.returncode != 0:
                    raise ImageError(f"--bin {src}: strip failed: {res.stderr.strip()}")
                self.add_file(root + src, dest)
                self.entries[dest] = ("bytes", open(out, "rb").read().decode("latin-1"), 0o755)
        else:
            self.add_file(root + src, dest)
        for lib in shared_libraries(src, self.sysroot):
            self.add_file(root + lib, lib)

    def tar(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for dest in sorted(self.entries):
                kind, src, mode = self.entries[dest]
                info = tarfile.TarInfo(dest.lstrip("/"))
                info.mode, info.mtime, info.uid, info.gid = mode, 0, 0, 0
                if dest == "/tmp":
                    info.mode = 0o1777
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif kind == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, src or ""
                    tar.addfile(info)
                else:
                    data = open(src, "rb").read() if kind == "file" else (src or "").encode("latin-1")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()


def base_files(layer: Layer) -> None:
    """What almost every program expects: users, groups, /tmp, and name resolution by files then DNS."""
    layer.add_bytes("/etc/passwd", f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin\n".encode())
    layer.add_bytes("/etc/group", f"root:x:0:\nnonroot:x:{NONROOT_UID}:\n".encode())
    layer.add_bytes("/etc/nsswitch.conf", b"hosts: files dns\n")
    layer.add_dir("/tmp", 0o1777)
    layer.add_dir("/home/nonroot", 0o755)


def write_archive(out: str, tag: str, layer_tar: bytes, config: dict) -> str:
    diff_id = hashlib.sha256(layer_tar).hexdigest()
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "ztlab infrastructure/kind/mkimage.py"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
    config_id = hashlib.sha256(config_bytes).hexdigest()
    manifest = [{"Config": f"{config_id}.json", "RepoTags": [tag], "Layers": [f"{diff_id}/layer.tar"]}]
    tmp = out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((f"{diff_id}/layer.tar", layer_tar), (f"{config_id}.json", config_bytes),
                           ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)
    return config_id


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tag", required=True, help="image name and tag, e.g. localhost/ztlab/opa:dev")
    p.add_argument("--out", required=True, help="the archive to write")
    p.add_argument("--bin", action="append", default=[], metavar="SRC[:DEST]", help="a program, with the shared libraries it needs")
    p.add_argument("--strip", action="store_true", help="strip symbols and debug data from --bin programs (not from their libraries)")
    p.add_argument("--sysroot", default=None, help="take --bin programs and their libraries from this root file system (ldd runs chrooted)")
    p.add_argument("--file", action="append", default=[], metavar="SRC[:DEST]", help="one file")
    p.add_argument("--tree", action="append", default=[], metavar="SRC[:DEST]", help="a directory, recursively")
    p.add_argument("--symlink", action="append", default=[], metavar="DEST:TARGET", help="a symbolic link")
    p.add_argument("--dir", action="append", default=[], metavar="DEST", help="an empty directory, writable by all")
    p.add_argument("--entrypoint", nargs="+", default=None, help="the entrypoint, as argv")
    p.add_argument("--cmd", nargs="+", default=None, help="the default arguments")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="an environment variable")
    p.add_argument("--user", default=str(NONROOT_UID), help=f"uid[:gid] to run as (default {NONROOT_UID}, non-root)")
    p.add_argument("--workdir", default="/", help="the working directory")
    a = p.parse_args(argv)
    try:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?", a.tag):
            raise ImageError(f"--tag {a.tag!r}: expected name[:tag] in lower case")
        for e in a.env:
            if "=" not in e:
                raise ImageError(f"--env {e!r}: expected KEY=VALUE")
        if not re.fullmatch(r"\d+(:\d+)?", a.user):
            raise ImageError(f"--user {a.user!r}: expected a numeric uid[:gid]")
        if a.sysroot and not os.path.isdir(a.sysroot):
            raise ImageError(f"--sysroot {a.sysroot!r}: not a directory")
        layer = Layer(a.sysroot, a.strip)
        base_files(layer)
        for spec in a.bin:
            layer.add_program(*split_spec("--bin", spec, a.sysroot))
        for spec in a.file:
            layer.add_file(*split_spec("--file", spec))
        for spec in a.tree:
            layer.add_tree(*split_spec("--tree", spec))
        for spec in a.symlink:
            dest, _, target = spec.partition(":")
            if not dest.startswith("/") or not target:
                raise ImageError(f"--symlink {spec!r}: expected /DEST:TARGET")
            layer.add_symlink(dest, target)
        for d in a.dir:
            if not d.startswith("/"):
                raise ImageError(f"--dir {d!r}: expected an absolute path")
            layer.add_dir(d, 0o1777 if d == "/tmp" else 0o777)
        config: dict = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", *a.env],
                        "User": a.user, "WorkingDir": a.workdir}
        if a.entrypoint:
            config["Entrypoint"] = a.entrypoint
        if a.cmd:
            config["Cmd"] = a.cmd
        image_id = write_archive(a.out, a.tag, layer.tar(), config)
    except (ImageError, OSError) as e:
        print(f"mkimage: {e}", file=sys.stderr)
        return 2
    print(f"{a.tag} sha256:{image_id[:12]} {os.path.getsize(a.out) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
