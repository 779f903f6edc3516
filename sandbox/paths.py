"""The checkout boundary: what the product reads or writes in a fleet checkout stays inside it.

A fleet repository is data other people write (a pull request, a compromised
account, a careless ``ln -s``). Git stores a symbolic link as a link, so a
checkout may hold ``clusters/development -> /home/worker/.ssh`` or
``apps/x.yaml -> ../../../../etc/shadow``; followed blindly, clone would copy,
commit and push the machine's files, bootstrap would apply them, validate would
parse them and promote would overwrite files outside the checkout.

Every path the product touches in a checkout therefore goes through this module:
:func:`inside` for one path, :func:`entries` for a directory tree. The path is
resolved, following every link on the way, and one that ends outside the
checkout is refused with one line naming the link (:class:`OutsideRepositoryError`,
invalid input: exit 2). Links that stay inside are fine, and copies keep them as
links. :func:`leaving_links` lists the offending links for ``sandbox check``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sandbox.errors import InvalidInputError

#: How a checkout is named in messages unless the caller names it otherwise.
REPOSITORY = "the fleet repository"

#: Directories never walked: git's own data is not repository content.
SKIPPED_DIRECTORIES = frozenset({".git"})


class OutsideRepositoryError(InvalidInputError):
    """A path in a checkout leads outside it (through a symbolic link, or ``..``)."""


@dataclass(frozen=True)
class LeavingLink:
    """A symbolic link in a checkout whose target is outside the checkout.

    Attributes:
        path: The link's path relative to the checkout (POSIX form).
        target: What the link says (``os.readlink``), as the repository holds it.
    """

    path: str
    target: str

    def line(self, label: str = REPOSITORY) -> str:
        """One line naming the link, where it points and that it is refused."""
        return f"{self.path} is a symbolic link to {self.target}, outside {label}; refused"


def _relative_parts(repo: Path, path: Path) -> tuple[str, ...] | None:
    """``path``'s parts below ``repo`` as written (``None`` when it is not below it at all)."""
    if not path.is_absolute():
        return path.parts
    for base in (repo, Path(os.path.realpath(repo))):
        try:
            return path.relative_to(base).parts
        except ValueError:
            continue
    return None


def _shown(repo: Path, path: Path) -> str:
    """``path`` relative to ``repo`` (POSIX form) for messages; as given when it is not below it."""
    try:
        return PurePosixPath(*path.relative_to(repo).parts).as_posix()
    except ValueError:
        return path.as_posix()


def _leaves(root: Path, path: Path) -> bool:
    """Whether ``path``, with every link followed, resolves outside ``root`` (already resolved).

    ``os.path.realpath`` rather than ``Path.resolve``: a link loop leads nowhere
    (opening it fails), so it is judged where the loop is, never an exception.
    """
    return not Path(os.path.realpath(path)).is_relative_to(root)


def inside(repo: Path, path: Path | str, *, label: str = REPOSITORY) -> Path:
    """``path`` in the checkout ``repo``, after checking that it does not lead outside it.

    Every component of the path is looked at in turn: a component that is a
    symbolic link must resolve (its whole chain of links) inside ``repo``, and so
    must the path as a whole (``..`` included). The path need not exist.

    Args:
        repo: The checkout's root directory.
        path: A path relative to ``repo`` (``clusters/development``) or an absolute
            path below it.
        label: How to name the checkout in the message.

    Returns:
        ``repo / path`` as written: a link that stays inside is not replaced by its
        target, so copies can keep it as a link.

    Raises:
        OutsideRepositoryError: The path, or a link on its way, leads outside ``repo``.
    """
    root = Path(os.path.realpath(repo))
    given = Path(path)
    parts = _relative_parts(repo, given)
    shown = given.as_posix()
    if parts is None or os.path.normpath(os.path.join(".", *parts)).split(os.sep)[0] == "..":
        raise OutsideRepositoryError(f"{shown} leads outside {label}; refused")
    current = repo
    for part in parts:
        current = current / part
        if current.is_symlink() and _leaves(root, current):
            raise OutsideRepositoryError(LeavingLink(_shown(repo, current), os.readlink(current)).line(label))
    if _leaves(root, current):
        raise OutsideRepositoryError(f"{shown} leads outside {label}; refused")
    return current


def entries(repo: Path, directory: Path | str, *, label: str = REPOSITORY) -> dict[PurePosixPath, Path]:
    """Every regular file and symbolic link below a checkout directory, by path relative to it.

    A link is an entry of its own (git stores it as a link) and a link to a
    directory is not descended into. ``.git`` is never walked.

    Args:
        repo: The checkout's root directory.
        directory: The directory to walk (relative to ``repo``, or absolute below it).
        label: How to name the checkout in the message.

    Returns:
        The entries, sorted by relative path.

    Raises:
        OutsideRepositoryError: ``directory``, or any link below it, leads outside ``repo``.
    """
    top = inside(repo, directory, label=label)
    root = Path(os.path.realpath(repo))
    found: dict[PurePosixPath, Path] = {}
    for dirpath, dirnames, filenames in os.walk(top):  # followlinks=False: links are entries
        dirnames[:] = sorted(name for name in dirnames if name not in SKIPPED_DIRECTORIES)
        here = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = here / name
            if path.is_symlink():
                if _leaves(root, path):
                    raise OutsideRepositoryError(LeavingLink(_shown(repo, path), os.readlink(path)).line(label))
            elif not path.is_file():
                continue
            found[PurePosixPath(*path.relative_to(top).parts)] = path
    return dict(sorted(found.items()))


def leaving_links(repo: Path, directory: Path | str = ".") -> list[LeavingLink]:
    """Every symbolic link below ``directory`` of a checkout that leads outside the checkout.

    Unlike :func:`entries` this never raises for such a link: it lists them all
    (``sandbox check`` reports each as a policy violation). ``.git`` is not walked.

    Args:
        repo: The checkout's root directory.
        directory: Where to look (default: the whole checkout).

    Returns:
        The links, sorted by path.
    """
    root = Path(os.path.realpath(repo))
    found: list[LeavingLink] = []
    top = repo / directory
    if top.is_symlink():
        if _leaves(root, top):
            found.append(LeavingLink(_shown(repo, top), os.readlink(top)))
        return found
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(name for name in dirnames if name not in SKIPPED_DIRECTORIES)
        here = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = here / name
            if path.is_symlink() and _leaves(root, path):
                found.append(LeavingLink(_shown(repo, path), os.readlink(path)))
    return sorted(found, key=lambda link: link.path)
