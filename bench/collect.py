"""Collect the real-world notebooks that ``bench.realworld`` measures, from public Git repositories.

Run from the repository root: ``.venv/bin/python -m bench.collect [DIR] [--repos FOLDER] [--only GROUP]``.
Each source of :data:`SOURCES` is a repository, the revisions to read and the notebook paths to take. Each
notebook goes, with the files it reads, into a folder of its own:
``DIR/<group>/<owner>__<name>__<path>[@<revision>]/<notebook's folder>/<name>.ipynb``. The files it reads are
the repository paths its code names (``'data/births.csv'``, ``'../data/weather.csv'``, ``%run helpers.py``),
relative to its folder, and the small files beside it (a module it imports). A notebook whose code names
``../`` paths gets the folders above its own, so those paths resolve as in the repository. The same notebook
at several revisions (Kale's examples across its history) is collected once, at the newest.
``DIR/../manifest.json`` says where each notebook came from; ``bench.realworld`` reads it.

Repositories are read with ``git`` from FOLDER (``--repos``): ``FOLDER/<owner>+<name>`` (a clone, bare or
not, or a folder holding one as ``repo``); a missing one is cloned there from GitHub (``--no-clone`` refuses).
Files larger than ``--max-file`` and blobs the clone lacks are left out and counted.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import posixpath
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .realworld import COLLECTED_MARKER, DEFAULT_DIR

#: Words in a notebook's code that may name a file: quoted text, or a path after a magic or shell command.
_PATH_WORD = re.compile(r"[\w.~-]+(?:/[\w.~-]+)*/?")
#: A file beside the notebook is taken, unasked, up to this size (a module it imports, a small config).
SIBLING_LIMIT = 256 * 1024


@dataclass(frozen=True)
class Source:
    """A repository, the revisions to read it at (newest first) and the notebooks to take (``fnmatch`` patterns,
    whose ``*`` also matches ``/``)."""

    group: str
    repo: str
    patterns: tuple[str, ...]
    revisions: tuple[str, ...] = ("HEAD",)


#: Where the collection comes from: Kale's examples across its history, Kubeflow's Kale-tagged examples,
#: papermill's test notebooks, Elyra's and ploomber's examples, a data-science book and a pandas cookbook.
SOURCES: tuple[Source, ...] = (
    Source("kale", "kubeflow-kale/kale", ("examples/*.ipynb", "backend/examples/*.ipynb",
                                          "backend/kale/tests/assets/notebooks/*.ipynb",
                                          "backend/kale/tests/notebooks/*.ipynb"),
           ("HEAD", "v0.7.0", "v0.6.1", "v0.5.1", "v0.4.0", "v0.3.4", "0.2.0", "v0.1.2")),
    Source("kubeflow", "kubeflow/examples", ("*-kaggle-competition/*kale*.ipynb",)),
    Source("papermill", "nteract/papermill", ("papermill/tests/notebooks/*.ipynb",)),
    Source("elyra", "elyra-ai/examples", ("pipelines/*.ipynb",)),
    Source("ploomber", "ploomber/projects", ("templates/*.ipynb", "guides/*.ipynb", "cookbook/*.ipynb")),
    Source("books", "jakevdp/PythonDataScienceHandbook", ("notebooks/*.ipynb",)),
    Source("cookbook", "jvns/pandas-cookbook", ("cookbook/*.ipynb",)),
)


@dataclass
class Tally:
    """What one run collected and left out."""

    notebooks: int = 0
    duplicates: int = 0
    files: int = 0
    too_large: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def log(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


class Repository:
    """One Git repository, read with the ``git`` command."""

    def __init__(self, path: Path):
        self.path = path

    def git(self, *args: str, text: bool = True) -> str | bytes:
        """The output of ``git ARGS`` in this repository."""
        result = subprocess.run(["git", "--git-dir", str(self.path), *args], capture_output=True, text=text)
        if result.returncode:
            error = result.stderr if text else result.stderr.decode(errors="replace")
            raise RuntimeError(f"git {' '.join(args)}: {error.strip()}")
        return result.stdout

    def commit(self, revision: str) -> str | None:
        """The commit a revision names, or None when the repository has no such revision."""
        try:
            return str(self.git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")).strip()
        except RuntimeError:
            return None

    def tree(self, commit: str) -> dict[str, tuple[str, int]]:
        """Every file at a commit: path -> (blob id, size in bytes)."""
        files = {}
        for line in str(self.git("ls-tree", "-r", "-l", "-z", commit)).split("\0"):
            if not line:
                continue
            meta, _, path = line.partition("\t")
            _, kind, blob, size = meta.split()
            if kind == "blob" and size.isdigit():
                files[path] = (blob, int(size))
        return files

    def blob(self, blob: str) -> bytes | None:
        """A file's bytes, or None when this clone lacks them (a partial clone's large file)."""
        try:
            return bytes(self.git("cat-file", "blob", blob, text=False))
        except RuntimeError:
            return None


def open_repository(repos: Path, name: str, clone: bool) -> Repository:
    """The Git directory of ``owner/name`` under ``repos``, cloned from GitHub first when it is not there."""
    folder = repos / name.replace("/", "+")
    for candidate in (folder / "repo", folder / ".git", folder):
        if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
            return Repository(candidate)
    if not clone:
        raise SystemExit(f"collect: no clone of {name} in {folder} (and --no-clone)")
    log(f"cloning https://github.com/{name} into {folder}")
    subprocess.run(["git", "clone", "--quiet", "--bare", f"https://github.com/{name}", str(folder)], check=True)
    return Repository(folder)


def named_paths(notebook: dict, folder: str, tree: dict[str, tuple[str, int]]) -> set[str]:
    """The repository paths (files, or folders as a prefix) that a notebook's code names relative to its folder,
    above it too (``../data/x.csv``), as long as they stay inside the repository."""
    folders = {posixpath.dirname(path) for path in tree}
    folders |= {f for path in folders for f in _ancestors(path)}
    found = set()
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        for word in _PATH_WORD.findall("".join(source) if isinstance(source, list) else source):
            path = posixpath.normpath(posixpath.join(folder, word.rstrip("/")))
            if path.startswith("../") or path == "..":
                continue
            if path in tree or ("/" in word and path in folders and path != folder):  # 'data/', not "data"
                found.add(path)
    return found


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def common_folder(paths: set[str], folder: str) -> str:
    """The deepest folder that holds the notebook's folder and every path it names ("" for the root)."""
    base = folder.split("/") if folder else []
    for path in paths:
        parts = path.split("/")
        depth = 0
        while depth < len(base) and depth < len(parts) - 1 and base[depth] == parts[depth]:
            depth += 1
        base = base[:depth]
    return "/".join(base)


def files_of(notebook_path: str, named: set[str], tree: dict[str, tuple[str, int]]) -> list[str]:
    """The files to copy beside a notebook: those it names (a folder: every file in it) and its small siblings."""
    folder = posixpath.dirname(notebook_path)
    chosen = set()
    for path, (_, size) in tree.items():
        if path == notebook_path or path.endswith(".ipynb"):
            continue
        if path in named or any(path.startswith(prefix + "/") for prefix in named):
            chosen.add(path)
        elif posixpath.dirname(path) == folder and size <= SIBLING_LIMIT:
            chosen.add(path)
    return sorted(chosen)


def _slug(text: str) -> str:
    return re.sub(r"[^\w.@-]+", "_", text).strip("_")


def collect(sources: tuple[Source, ...], root: Path, repos: Path, clone: bool, max_file: int) -> Tally:
    """Write every source's notebooks, with their files, under ``root``, and the manifest beside it."""
    tally = Tally()
    manifest = []
    seen: set[tuple[str, str]] = set()
    for source in sources:
        repository = open_repository(repos, source.repo, clone)
        for index, revision in enumerate(source.revisions):
            commit = repository.commit(revision)
            if commit is None:
                log(f"{source.repo}: no revision {revision}, skipped")
                continue
            tree = repository.tree(commit)
            notebooks = sorted((p for p in tree if any(fnmatch.fnmatch(p, pattern) for pattern in source.patterns)
                                and ".ipynb_checkpoints" not in p), key=lambda p: (p.count("/"), p))  # a copy after
            log(f"{source.repo}@{revision}: {len(notebooks)} notebooks")
            for path in notebooks:
                blob, _ = tree[path]
                if (source.repo, blob) in seen:
                    tally.duplicates += 1
                    continue
                seen.add((source.repo, blob))
                data = repository.blob(blob)
                if data is None:
                    tally.missing.append(f"{source.repo}:{path}")
                    continue
                try:
                    notebook = json.loads(data)
                except ValueError:
                    tally.missing.append(f"{source.repo}:{path} (not JSON)")
                    continue
                folder = posixpath.dirname(path)
                named = named_paths(notebook, folder, tree)
                base = common_folder(named, folder)
                suffix = "" if index == 0 else f"@{revision}"
                target = root / source.group / (_slug(f"{source.repo.replace('/', '__')}__{path[:-6]}") + suffix)
                if target.exists():
                    shutil.rmtree(target)
                where = target / posixpath.relpath(path, base or ".")
                where.parent.mkdir(parents=True, exist_ok=True)
                (target / COLLECTED_MARKER).write_text(f"{source.repo} {commit} {path}\n")
                where.write_bytes(data)
                for file in files_of(path, named, tree):
                    blob_id, size = tree[file]
                    if size > max_file:
                        tally.too_large.append(f"{source.repo}:{file} ({size:,} B)")
                        continue
                    content = repository.blob(blob_id)
                    if content is None:
                        tally.missing.append(f"{source.repo}:{file}")
                        continue
                    copy = target / posixpath.relpath(file, base or ".")
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    copy.write_bytes(content)
                    tally.files += 1
                tally.notebooks += 1
                manifest.append({"local_file": str(where.relative_to(root.parent)), "repo": source.repo,
                                 "path": path, "commit": commit, "revision": revision})
    (root.parent / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return tally


def main(argv: list[str] | None = None) -> int:
    """Collect the notebooks; print what was collected and left out."""
    parser = argparse.ArgumentParser(prog="python -m bench.collect", description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR,
                        help=f"where the notebooks go (default: {DEFAULT_DIR}); the manifest goes beside it")
    parser.add_argument("--repos", type=Path, default=Path.home() / ".cache" / "nbconvert-kfp-bench" / "repos",
                        help="the folder of Git clones, OWNER+NAME each (default: %(default)s)")
    parser.add_argument("--no-clone", action="store_true", help="use only the clones in --repos")
    parser.add_argument("--only", action="append", default=[], metavar="GROUP",
                        help="only this group (repeatable): " + ", ".join(s.group for s in SOURCES))
    parser.add_argument("--max-file", type=int, default=50 * 1024 * 1024, metavar="BYTES",
                        help="leave out data files larger than this (default: 50 MiB)")
    args = parser.parse_args(argv)
    unknown = set(args.only) - {s.group for s in SOURCES}
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    sources = tuple(s for s in SOURCES if not args.only or s.group in args.only)
    args.repos.mkdir(parents=True, exist_ok=True)
    tally = collect(sources, args.dir.resolve(), args.repos, not args.no_clone, args.max_file)
    log(f"collected {tally.notebooks} notebooks ({tally.duplicates} identical at an older revision skipped) "
        f"and {tally.files} files into {args.dir}")
    for label, items in (("left out, larger than --max-file", tally.too_large),
                         ("left out, not in the clone", tally.missing)):
        if items:
            log(f"{label}: {len(items)}")
            for item in items[:20]:
                log(f"  {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
