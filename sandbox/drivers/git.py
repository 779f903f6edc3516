"""The git driver: real ``git`` through the one subprocess helper.

Tests and the demo use a local bare repository as the remote; production uses
any remote git understands. Credentials embedded in a remote URL are redacted
from every error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from sandbox.errors import CommandTransientError, PermanentError, SandboxError
from sandbox.proc import Command, CompletedCommand, run, tail
from sandbox.redaction import redact_url, register_url_credentials


@dataclass(frozen=True)
class DiffStat:
    """Lines added and removed in one file (``git diff --numstat``)."""

    path: str
    added: int
    removed: int
    binary: bool = False


class GitError(PermanentError):
    """git refused the operation (unknown ref, rejected push, bad credentials, ...)."""


class GitAuthError(GitError):
    """The remote rejected our credentials."""


_TRANSIENT = re.compile(
    r"Could not resolve host|Connection (timed out|reset|refused)|early EOF|"
    r"The remote end hung up unexpectedly|Operation timed out|RPC failed|index\.lock",
    re.IGNORECASE,
)
_AUTH = re.compile(r"Authentication failed|Permission denied|403|401|could not read Username", re.IGNORECASE)
#: Why a timed-out git command that writes the local repository is not retried.
_INTERRUPTED_WRITE_NOTE = (
    "git may have left a lock file behind in {repo}/.git (index.lock, config.lock or a ref's .lock); "
    "remove it once no git runs there"
)


def _secrets_in(url: str) -> tuple[str, ...]:
    """The credentials a remote URL embeds, registered for every redaction (:mod:`sandbox.redaction`)."""
    register_url_credentials(url)
    match = re.search(r"://([^/@\s]+)@", url)
    return (match.group(1),) if match else ()


def _classify(done: CompletedCommand) -> SandboxError:
    text = redact_url(tail(done.stderr or done.stdout))
    what = " ".join(done.command.argv[1:3])
    if _AUTH.search(text):
        return GitAuthError(f"git {what}: credentials rejected: {text}")
    if _TRANSIENT.search(text):
        return CommandTransientError(f"git {what}: {text}", returncode=done.returncode, stderr_tail=text)
    return GitError(f"git {what}: {text}")


@runtime_checkable
class GitDriver(Protocol):
    """The git operations the core calls (:class:`GitCli` runs them with ``git``).

    The core is typed with this Protocol; :mod:`sandbox.wiring` picks the implementation.
    """

    def clone(self, remote: str, dest: Path) -> None:
        """Clone ``remote`` into the new directory ``dest``."""
        ...

    def fetch(self, repo: Path) -> None:
        """Fetch every branch and tag from ``origin`` (pruning deleted branches)."""
        ...

    def checkout(self, repo: Path, branch: str, *, start: str | None = None) -> None:
        """Check out ``branch``; create it from ``start`` when given and the branch is new."""
        ...

    def current_branch(self, repo: Path) -> str:
        """The checked-out branch (empty when HEAD is detached)."""
        ...

    def delete_branch(self, repo: Path, branch: str) -> None:
        """Delete a local branch (not the checked-out one)."""
        ...

    def reset_hard(self, repo: Path, rev: str) -> None:
        """Move the current branch to ``rev``, discarding local changes."""
        ...

    def commit_all(self, repo: Path, message: str, paths: Sequence[str] = ()) -> str | None:
        """Stage ``paths`` (all when empty) and commit; the new sha, or ``None`` if nothing changed."""
        ...

    def push(self, repo: Path, branch: str) -> None:
        """Push ``branch`` to ``origin`` (never forced)."""
        ...

    def delete_remote_branch(self, repo: Path, branch: str) -> None:
        """Delete ``branch`` on ``origin``."""
        ...

    def delete_remote_branch_at(self, repo: Path, branch: str, sha: str) -> None:
        """Delete ``branch`` on ``origin`` only while it still points at ``sha``."""
        ...

    def rev_parse(self, repo: Path, rev: str) -> str | None:
        """The commit ``rev`` names, or ``None`` when it does not exist."""
        ...

    def remote_branches(self, remote: str) -> dict[str, str]:
        """Branch name -> sha on a remote (``git ls-remote --heads``)."""
        ...

    def remote_tags(self, remote: str) -> dict[str, str]:
        """Tag name -> sha of the tagged commit on ``remote``."""
        ...

    def changed_files(self, repo: Path, base: str, head: str, path: str) -> list[str]:
        """Files under ``path`` that differ between ``base`` and ``head``."""
        ...

    def diff_stat(self, repo: Path, base: str, head: str, path: str) -> list[DiffStat]:
        """Per file under ``path``: lines added and removed between ``base`` and ``head``."""
        ...

    def diff(self, repo: Path, base: str, head: str, path: str) -> str:
        """The unified diff of ``path`` between ``base`` and ``head``."""
        ...

    def is_ancestor(self, repo: Path, ancestor: str, descendant: str) -> bool:
        """Whether commit ``ancestor`` is reachable from ``descendant`` (equal commits count)."""
        ...

    def merge_base(self, repo: Path, a: str, b: str) -> str:
        """The best common ancestor of two commits."""
        ...

    def commit_time(self, repo: Path, commit: str) -> int:
        """The committer time of ``commit``, in seconds since the epoch."""
        ...

    def init_bare(self, path: Path, default_branch: str = "main") -> None:
        """Create a bare repository (the demo's and the tests' remote)."""
        ...

    def init_repo(self, path: Path, remote: str, default_branch: str = "main") -> None:
        """Make ``path`` a repository with ``origin`` set to ``remote``."""
        ...

    def tag(self, repo: Path, name: str, message: str) -> None:
        """Create an annotated tag at HEAD."""
        ...

    def push_tag(self, repo: Path, name: str) -> None:
        """Push a tag to ``origin``."""
        ...

    def list_tree(self, repo: Path, rev: str, path: str, *, directories: bool = False) -> list[str]:
        """Names of the entries directly under ``path`` at ``rev`` (only subdirectories when ``directories``)."""
        ...

    def show_file(self, repo: Path, rev: str, path: str) -> str | None:
        """The content of ``path`` at ``rev``, or ``None`` when it does not exist there."""
        ...


class GitCli:
    """:class:`GitDriver` over the real ``git`` executable.

    Args:
        binary: The git executable.
        timeout: Seconds a single git command may run.
        author_name: Author and committer name for commits.
        author_email: Author and committer e-mail for commits.
    """

    def __init__(
        self,
        binary: str = "git",
        timeout: float = 300,
        author_name: str = "fleet-sandbox",
        author_email: str = "fleet-sandbox@localhost",
    ) -> None:
        self.binary = binary
        self.timeout = timeout
        self._env = {
            "GIT_AUTHOR_NAME": author_name,
            "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": author_name,
            "GIT_COMMITTER_EMAIL": author_email,
            "GIT_TERMINAL_PROMPT": "0",  # never hang on a password prompt
            "GIT_CONFIG_NOSYSTEM": "1",
        }

    def command(self, repo: Path, *args: str, redact: tuple[str, ...] = ()) -> Command:
        """Build (not run) a git command in ``repo``."""
        return Command(argv=(self.binary, *args), cwd=repo, timeout=self.timeout, env=self._env, redact=redact)

    # A git command that outlives the timeout is killed. Each call says whether it may
    # run again: commands that talk to the remote are retried (a clone goes into a fresh
    # or emptied directory, its callers see to that; fetch and ls-remote read; a push's
    # ref update on the remote is atomic, so a rerun finds it done or does it), and so
    # are reads of the local repository and git init (it reinitialises an existing
    # repository). Other commands that write the local repository are not: git killed
    # mid-write may leave a lock file (.git/index.lock, config.lock, a ref's .lock)
    # behind, and every rerun fails on it until it is removed.
    def _git(self, repo: Path, *args: str, timeout_is_retryable: bool, redact: tuple[str, ...] = ()) -> str:
        done = run(
            self.command(repo, *args, redact=redact),
            classify=_classify,
            timeout_is_retryable=timeout_is_retryable,
            timeout_note="" if timeout_is_retryable else _INTERRUPTED_WRITE_NOTE.format(repo=repo),
        )
        return done.stdout.strip()

    def clone(self, remote: str, dest: Path) -> None:
        """Clone ``remote`` into the new directory ``dest``."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._git(
            dest.parent, "clone", "--quiet", remote, dest.name, redact=_secrets_in(remote), timeout_is_retryable=True
        )

    def fetch(self, repo: Path) -> None:
        """Fetch every branch and tag from ``origin``."""
        self._git(repo, "fetch", "--quiet", "--prune", "--tags", "origin", timeout_is_retryable=True)

    def checkout(self, repo: Path, branch: str, *, start: str | None = None) -> None:
        """Check out ``branch``, creating it from ``start`` if it does not exist locally."""
        if self.rev_parse(repo, f"refs/heads/{branch}") is not None:
            self._git(repo, "checkout", "--quiet", branch, timeout_is_retryable=False)
        elif self.rev_parse(repo, f"refs/remotes/origin/{branch}") is not None:
            self._git(
                repo, "checkout", "--quiet", "-b", branch, "--track", f"origin/{branch}", timeout_is_retryable=False
            )
        elif start is not None:
            self._git(repo, "checkout", "--quiet", "--no-track", "-b", branch, start, timeout_is_retryable=False)
        else:
            raise GitError(f"branch {branch!r} does not exist")

    def current_branch(self, repo: Path) -> str:
        """The checked-out branch (empty when HEAD is detached)."""
        done = run(
            self.command(repo, "symbolic-ref", "--quiet", "--short", "HEAD"), check=False, timeout_is_retryable=True
        )
        return done.stdout.strip()

    def delete_branch(self, repo: Path, branch: str) -> None:
        """Delete a local branch (not the checked-out one)."""
        self._git(repo, "branch", "--quiet", "-D", branch, timeout_is_retryable=False)

    def reset_hard(self, repo: Path, rev: str) -> None:
        """Move the current branch to ``rev``, discarding local changes."""
        self._git(repo, "reset", "--quiet", "--hard", rev, timeout_is_retryable=False)

    def commit_all(self, repo: Path, message: str, paths: Sequence[str] = ()) -> str | None:
        """Stage ``paths`` (all when empty) and commit; ``None`` when nothing changed."""
        self._git(repo, "add", "--all", "--", *(paths or ["."]), timeout_is_retryable=False)
        # status refreshes the index as it reads it: a write.
        status = self._git(repo, "status", "--porcelain", "--", *(paths or ["."]), timeout_is_retryable=False)
        if not status:
            return None
        self._git(repo, "commit", "--quiet", "--no-verify", "-m", message, timeout_is_retryable=False)
        return self._git(repo, "rev-parse", "HEAD", timeout_is_retryable=True)

    def push(self, repo: Path, branch: str) -> None:
        """Push ``branch`` to ``origin`` (never forced)."""
        self._git(
            repo, "push", "--quiet", "origin", f"refs/heads/{branch}:refs/heads/{branch}", timeout_is_retryable=True
        )

    def delete_remote_branch(self, repo: Path, branch: str) -> None:
        """Delete ``branch`` on ``origin``."""
        self._git(repo, "push", "--quiet", "origin", f":refs/heads/{branch}", timeout_is_retryable=True)

    def rev_parse(self, repo: Path, rev: str) -> str | None:
        """The commit ``rev`` names, or ``None``."""
        done = run(
            self.command(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"),
            check=False,
            timeout_is_retryable=True,
        )
        return done.stdout.strip() if done.returncode == 0 else None

    def remote_branches(self, remote: str) -> dict[str, str]:
        """Branch name -> sha on ``remote``."""
        out = self._git(
            Path.cwd(), "ls-remote", "--heads", remote, redact=_secrets_in(remote), timeout_is_retryable=True
        )
        branches = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            branches[ref.removeprefix("refs/heads/")] = sha
        return branches

    def remote_tags(self, remote: str) -> dict[str, str]:
        """Tag name -> sha of the tagged commit on ``remote``."""
        out = self._git(
            Path.cwd(), "ls-remote", "--tags", remote, redact=_secrets_in(remote), timeout_is_retryable=True
        )
        tags: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            name = ref.removeprefix("refs/tags/")
            if name.endswith("^{}"):
                tags[name[:-3]] = sha  # peeled annotated tag: the commit
            else:
                tags.setdefault(name, sha)
        return tags

    def changed_files(self, repo: Path, base: str, head: str, path: str) -> list[str]:
        """Files under ``path`` that differ between ``base`` and ``head`` (a rename is both names)."""
        out = self._git(
            repo, "diff", "--no-renames", "--name-only", f"{base}", f"{head}", "--", path, timeout_is_retryable=True
        )
        return [line for line in out.splitlines() if line]

    def diff_stat(self, repo: Path, base: str, head: str, path: str) -> list[DiffStat]:
        """Per file under ``path``: lines added and removed between ``base`` and ``head``."""
        out = self._git(repo, "diff", "--no-renames", "--numstat", base, head, "--", path, timeout_is_retryable=True)
        stats = []
        for line in out.splitlines():
            added, removed, name = line.split("\t", 2)
            binary = added == "-"
            stats.append(DiffStat(name, 0 if binary else int(added), 0 if binary else int(removed), binary))
        return stats

    def diff(self, repo: Path, base: str, head: str, path: str) -> str:
        """The unified diff of ``path`` between ``base`` and ``head``."""
        return self._git(repo, "diff", "--no-renames", "--no-color", base, head, "--", path, timeout_is_retryable=True)

    def is_ancestor(self, repo: Path, ancestor: str, descendant: str) -> bool:
        """Whether commit ``ancestor`` is reachable from ``descendant`` (equal commits count).

        Raises:
            GitError: A commit is unknown in ``repo``.
        """
        command = self.command(repo, "merge-base", "--is-ancestor", ancestor, descendant)
        done = run(command, check=False, timeout_is_retryable=True)
        if done.returncode in (0, 1):
            return done.returncode == 0
        raise _classify(done)

    def merge_base(self, repo: Path, a: str, b: str) -> str:
        """The best common ancestor of two commits."""
        return self._git(repo, "merge-base", a, b, timeout_is_retryable=True)

    def commit_time(self, repo: Path, commit: str) -> int:
        """The committer time of ``commit``, in seconds since the epoch."""
        return int(self._git(repo, "show", "-s", "--format=%ct", commit, timeout_is_retryable=True))  # a read

    def log_subjects(self, repo: Path, rev_range: str) -> list[str]:
        """Commit subjects in ``rev_range``, newest first."""
        out = self._git(repo, "log", "--format=%s", rev_range, timeout_is_retryable=True)
        return [line for line in out.splitlines() if line]

    def init_bare(self, path: Path, default_branch: str = "main") -> None:
        """Create a bare repository (the demo's and the tests' remote)."""
        path.mkdir(parents=True, exist_ok=True)
        self._git(path, "init", "--quiet", "--bare", f"--initial-branch={default_branch}", timeout_is_retryable=True)

    def init_repo(self, path: Path, remote: str, default_branch: str = "main") -> None:
        """Make ``path`` a repository with ``origin`` set to ``remote``."""
        self._git(path, "init", "--quiet", f"--initial-branch={default_branch}", timeout_is_retryable=True)
        self._git(path, "remote", "add", "origin", remote, redact=_secrets_in(remote), timeout_is_retryable=False)

    def tag(self, repo: Path, name: str, message: str) -> None:
        """Create an annotated tag at HEAD."""
        self._git(repo, "tag", "-a", name, "-m", message, timeout_is_retryable=False)

    def push_tag(self, repo: Path, name: str) -> None:
        """Push a tag to ``origin``."""
        self._git(repo, "push", "--quiet", "origin", f"refs/tags/{name}", timeout_is_retryable=True)

    def list_tree(self, repo: Path, rev: str, path: str, *, directories: bool = False) -> list[str]:
        """Names of the entries directly under ``path`` at ``rev`` (only subdirectories when ``directories``)."""
        args = ["ls-tree", "--name-only", *(["-d"] if directories else []), rev, "--", f"{path.rstrip('/')}/"]
        out = self._git(repo, *args, timeout_is_retryable=True)
        return [line.rsplit("/", 1)[-1] for line in out.splitlines() if line]

    def show_file(self, repo: Path, rev: str, path: str) -> str | None:
        """The content of ``path`` at ``rev``, or ``None`` when it does not exist there."""
        done = run(self.command(repo, "cat-file", "blob", f"{rev}:{path}"), check=False, timeout_is_retryable=True)
        return done.stdout if done.returncode == 0 else None

    def delete_remote_branch_at(self, repo: Path, branch: str, sha: str) -> None:
        """Delete ``branch`` on ``origin`` only while it still points at ``sha`` (``--force-with-lease``).

        Raises:
            GitError: The branch moved since ``sha`` was read (someone pushed), or the push was rejected.
        """
        lease = f"--force-with-lease=refs/heads/{branch}:{sha}"
        self._git(repo, "push", "--quiet", lease, "origin", f":refs/heads/{branch}", timeout_is_retryable=True)
