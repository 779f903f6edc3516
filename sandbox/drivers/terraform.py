"""The terraform driver: the real ``terraform`` (or OpenTofu's ``tofu``) binary.

python-terraform builds the command lines; every command runs through
:func:`sandbox.proc.run` (explicit working directory, timeout, no shell), so
errors carry a bounded, redacted tail of Terraform's own message
(:mod:`sandbox.drivers.terraform_errors` maps a failure to the product's errors).

Each sandbox gets its own working directory, initialised from the cluster
module with ``terraform init -from-module``, and its own workspace, so sandboxes
never share state whether the module uses the local backend or a remote one.

Variables travel in a JSON var-file written to a private temporary directory
that is removed after each command (python-terraform's own ``var=`` handling
would leave temporary files behind). Values wrapped in pydantic's
:class:`~pydantic.SecretStr` are treated as secrets: they are redacted from
every error and from plan text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr
from python_terraform import IsFlagged, Terraform

from sandbox.drivers.terraform_errors import TerraformError, classify
from sandbox.errors import ConflictError, InvalidInputError, SandboxError
from sandbox.hardening import private_directory, private_file
from sandbox.proc import Command, run
from sandbox.redaction import register_kubeconfig, register_secrets

#: The plan file :meth:`PythonTerraformDriver.plan` saves in the working
#: directory. Hidden, so it is never mistaken for part of the module copy.
PLAN_FILE = ".fleet-sandbox.tfplan"

#: Written into a working directory this driver initialised; its presence is
#: what allows :meth:`PythonTerraformDriver.prepare` to refresh the module copy.
WORKDIR_MARKER = ".fleet-sandbox-workdir"

#: Why a timed-out ``apply`` or ``destroy`` is not retried, and what to do first.
INTERRUPTED_CHANGE_NOTE = (
    "Terraform may have changed resources without recording them in the state, and the state lock "
    "may still be held; check the state (terraform force-unlock a lock whose run is gone) before running it again"
)

#: Files and directories in a working directory that belong to Terraform, not
#: to the module copy (local-backend state lives here).
_TERRAFORM_OWNED = frozenset({"terraform.tfstate", "terraform.tfstate.backup", "terraform.tfstate.d"})

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")  # fullmatch, as every name check
# Terraform only requires a URL path segment; sandbox names are far stricter anyway.
_WORKSPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,89}")


# -- plain data in and out ------------------------------------------------------


class TerraformOutput(BaseModel):
    """One root-module output (``terraform output -json``).

    ``repr()`` and ``str()`` never show a sensitive value; read ``.value``
    explicitly where the secret is needed.
    """

    model_config = ConfigDict(frozen=True)

    value: Any = Field(description="The output's value (any JSON type)")
    sensitive: bool = Field(default=False, description="Marked sensitive in the module")

    def shown_value(self) -> Any:
        """The value, or ``"<sensitive>"`` for a sensitive output."""
        return "<sensitive>" if self.sensitive else self.value

    def __repr__(self) -> str:
        shown = "<sensitive>" if self.sensitive else repr(self.value)
        return f"TerraformOutput(value={shown}, sensitive={self.sensitive})"

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # pydantic's other renderings (rich, devtools) are built from these.
        yield "value", self.shown_value()
        yield "sensitive", self.sensitive

    def __str__(self) -> str:
        return str(self.shown_value())


def public_outputs(outputs: Mapping[str, TerraformOutput]) -> dict[str, Any]:
    """The values of the non-sensitive outputs only, e.g. for logs and the inventory."""
    return {name: out.value for name, out in outputs.items() if not out.sensitive}


class PlanSummary(BaseModel):
    """What a saved plan would do, by resource address."""

    add: list[str] = Field(default_factory=list, description="Resources to create")
    change: list[str] = Field(default_factory=list, description="Resources to update in place")
    destroy: list[str] = Field(default_factory=list, description="Resources to delete")
    replace: list[str] = Field(default_factory=list, description="Resources to delete and create again (either order)")
    forget: list[str] = Field(default_factory=list, description="Resources removed from state without being destroyed")
    outputs: dict[str, bool] = Field(
        default_factory=dict, description="Outputs the root module declares, by name: whether each is sensitive"
    )
    text: str = Field(default="", description="Terraform's human-readable plan (secrets redacted)")
    plan_file: str | None = Field(default=None, description="The saved plan, for apply(plan=...)")

    @property
    def is_destructive(self) -> bool:
        """Whether applying the plan deletes anything (a destroy or a replacement)."""
        return bool(self.destroy or self.replace)

    @property
    def has_changes(self) -> bool:
        """Whether applying the plan changes any resource."""
        return bool(self.add or self.change or self.destroy or self.replace or self.forget)

    def summary_line(self) -> str:
        """Terraform's own summary, e.g. ``Plan: 1 to add, 0 to change, 0 to destroy.``

        As in Terraform, a replacement counts once to add and once to destroy.
        """
        line = (
            f"Plan: {len(self.add) + len(self.replace)} to add, {len(self.change)} to change, "
            f"{len(self.destroy) + len(self.replace)} to destroy"
        )
        if self.forget:
            line += f", {len(self.forget)} to forget"
        return line + "."

    def resource_lines(self) -> list[str]:
        """One ``<action>: <address>`` line per resource the plan touches, deletions first."""
        actions = (
            ("destroy", self.destroy),
            ("replace", self.replace),
            ("update in place", self.change),
            ("create", self.add),
            ("forget", self.forget),
        )
        return [f"{action}: {address}" for action, addresses in actions for address in addresses]

    def markdown(self, title: str, *, max_text_chars: int = 20_000) -> str:
        """The plan as a Markdown report (an artifact): summary, resources, Terraform's text (bounded).

        The text is the already-redacted plan; sensitive values show as Terraform
        prints them (``(sensitive value)``).
        """
        lines = [f"# {title}", "", f"**{self.summary_line()}**", ""]
        if self.has_changes:
            lines += ["| action | resource |", "|---|---|"]
            lines += [f"| {line.split(': ', 1)[0]} | `{line.split(': ', 1)[1]}` |" for line in self.resource_lines()]
        else:
            lines.append("No changes: the infrastructure matches the configuration.")
        if self.text.strip():
            text = self.text.strip()
            if len(text) > max_text_chars:
                text = "…\n" + text[-max_text_chars:]
            lines += ["", "<details><summary>terraform plan output</summary>", "", "```text", text, "```", "</details>"]
        return "\n".join(lines) + "\n"


def parse_plan_json(document: Mapping[str, Any], *, text: str = "", plan_file: str | None = None) -> PlanSummary:
    """Summarise a ``terraform show -json <planfile>`` document.

    Args:
        document: The parsed JSON plan representation.
        text: The human-readable plan to keep alongside.
        plan_file: Where the plan is saved.

    Raises:
        TerraformError: The document is not a plan representation.
    """
    changes = document.get("resource_changes")
    if changes is None:
        if "format_version" not in document:
            raise TerraformError("terraform show -json did not return a plan")
        changes = []  # an empty configuration plans nothing
    summary = PlanSummary(text=text, plan_file=plan_file)
    declared = ((document.get("configuration") or {}).get("root_module") or {}).get("outputs") or {}
    summary.outputs = {str(name): bool((spec or {}).get("sensitive", False)) for name, spec in declared.items()}
    for change in changes:
        address = str(change.get("address", "?"))
        actions = list(change.get("change", {}).get("actions", []))
        if actions == ["create"]:
            summary.add.append(address)
        elif actions == ["update"]:
            summary.change.append(address)
        elif actions == ["delete"]:
            summary.destroy.append(address)
        elif sorted(actions) == ["create", "delete"]:
            summary.replace.append(address)
        elif actions == ["forget"]:
            summary.forget.append(address)
        # "no-op" and "read" (data sources) change nothing.
    return summary


# -- the protocol and the real driver ---------------------------------------------


@runtime_checkable
class TerraformDriver(Protocol):
    """The infrastructure-as-code operations this product needs.

    Every method takes the sandbox's working directory; the workspace chosen by
    :meth:`prepare` stays selected there for the later calls.
    """

    def prepare(self, workdir: Path, module_dir: Path, workspace: str) -> None:
        """Initialise ``workdir`` from ``module_dir`` and select (or create) ``workspace``."""
        ...

    def plan(self, workdir: Path, variables: Mapping[str, Any], *, destroy: bool = False) -> PlanSummary:
        """Save a plan (a destroy plan when ``destroy``) and summarise it."""
        ...

    def apply(
        self, workdir: Path, variables: Mapping[str, Any], *, plan: PlanSummary | None = None
    ) -> dict[str, TerraformOutput]:
        """Apply ``plan`` (or plan and apply ``variables`` at once); return the outputs."""
        ...

    def outputs(self, workdir: Path) -> dict[str, TerraformOutput]:
        """The root module's outputs in the selected workspace."""
        ...

    def destroy(self, workdir: Path, variables: Mapping[str, Any]) -> None:
        """Destroy everything in the selected workspace."""
        ...

    def has_state(self, workdir: Path, workspace: str) -> bool:
        """Whether ``workspace`` tracks any resource."""
        ...

    def workspaces(self, workdir: Path) -> list[str]:
        """The workspaces of the working directory's backend."""
        ...

    def delete_workspace(self, workdir: Path, workspace: str) -> None:
        """Delete an empty ``workspace`` (nothing to do when it does not exist)."""
        ...


class _ArgvBuilder(Terraform):
    """python-terraform's command-line builder, without its side effects.

    ``Terraform.__init__`` reads a state file from the current directory; the
    driver only wants :meth:`generate_cmd_string`, so that read is disabled.
    """

    def read_state_file(self, file_path: str | None = None) -> None:
        """Do nothing: the driver never reads state files itself."""
        self.tfstate = None


class PythonTerraformDriver:
    """:class:`TerraformDriver` over the real binary (python-terraform builds the argv).

    Args:
        binary: ``terraform`` or ``tofu`` (looked up on PATH) or a path to either.
        timeout: Longest a single command may run, in seconds.
        lock_timeout: How long to wait for a held state lock (``-lock-timeout``), e.g. ``60s``.
        env: Extra environment for every command (e.g. backend credentials).
    """

    def __init__(
        self,
        binary: str = "terraform",
        timeout: float = 3600,
        lock_timeout: str = "60s",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.timeout = timeout
        self.lock_timeout = lock_timeout
        self._extra_env = dict(env or {})
        self._builder = _ArgvBuilder(terraform_bin_path=binary)

    # -- command construction (unit-tested without the binary) -----------------

    def argv(self, subcommand: str, *args: str, **options: Any) -> tuple[str, ...]:
        """The argv for ``terraform <subcommand> [options] [args]``.

        Options follow python-terraform's conventions (``no_color=IsFlagged`` →
        ``-no-color``, ``input=False`` → ``-input=false``, a list repeats the flag).

        Raises:
            TypeError: An option value is a dict (python-terraform would write it to
                a temporary var-file it may never delete).
        """
        for name, value in options.items():
            if isinstance(value, dict):
                raise TypeError(f"option {name!r}: pass variables through a var-file, not a dict")
        return tuple(str(part) for part in self._builder.generate_cmd_string(subcommand, *args, **options))

    def command(
        self,
        workdir: Path,
        subcommand: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        redact: Sequence[str] = (),
        **options: Any,
    ) -> Command:
        """A :class:`~sandbox.proc.Command` for ``subcommand`` run in ``workdir``."""
        return Command(
            argv=self.argv(subcommand, *args, **options),
            cwd=Path(workdir),
            timeout=self.timeout,
            env={**self._base_env(), **(env or {})},
            redact=tuple(redact),
        )

    def _base_env(self) -> dict[str, str]:
        return {
            **self._extra_env,
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            # An inherited TF_WORKSPACE would silently override the sandbox's
            # workspace (and makes "workspace select" fail); empty means unset.
            "TF_WORKSPACE": "",
        }

    def init_command(self, workdir: Path, module_dir: Path | None = None) -> Command:
        """``init`` (``-from-module=<module_dir>`` for a fresh working directory)."""
        return self.command(
            workdir,
            "init",
            no_color=IsFlagged,
            input=False,
            lock_timeout=self.lock_timeout,
            from_module=str(Path(module_dir).resolve()) if module_dir is not None else None,
        )

    def select_workspace_command(self, workdir: Path, workspace: str) -> Command:
        """``workspace select -or-create=true <workspace>`` (Terraform ≥ 1.4, OpenTofu)."""
        return self.command(workdir, "workspace select", workspace, no_color=IsFlagged, or_create=True)

    def plan_command(
        self, workdir: Path, var_file: Path, *, destroy: bool = False, redact: Sequence[str] = ()
    ) -> Command:
        """``plan -out=<PLAN_FILE>`` with the variables in ``var_file``."""
        return self.command(
            workdir,
            "plan",
            redact=redact,
            no_color=IsFlagged,
            input=False,
            lock_timeout=self.lock_timeout,
            var_file=[str(var_file)],
            out=PLAN_FILE,
            destroy=IsFlagged if destroy else None,
        )

    def apply_command(
        self,
        workdir: Path,
        *,
        var_file: Path | None = None,
        plan_file: str | None = None,
        redact: Sequence[str] = (),
    ) -> Command:
        """``apply <plan_file>``, or ``apply -auto-approve`` with the variables in ``var_file``."""
        if plan_file is not None:
            # A saved plan already holds its variables; Terraform refuses new ones.
            return self.command(
                workdir,
                "apply",
                plan_file,
                redact=redact,
                no_color=IsFlagged,
                input=False,
                lock_timeout=self.lock_timeout,
            )
        return self.command(
            workdir,
            "apply",
            redact=redact,
            no_color=IsFlagged,
            input=False,
            lock_timeout=self.lock_timeout,
            auto_approve=IsFlagged,
            var_file=[str(var_file)] if var_file is not None else None,
        )

    def destroy_command(self, workdir: Path, var_file: Path, *, redact: Sequence[str] = ()) -> Command:
        """``destroy -auto-approve`` with the variables in ``var_file``."""
        return self.command(
            workdir,
            "destroy",
            redact=redact,
            no_color=IsFlagged,
            input=False,
            lock_timeout=self.lock_timeout,
            auto_approve=IsFlagged,
            var_file=[str(var_file)],
        )

    # -- operations ---------------------------------------------------------------
    #
    # A command that outlives the timeout is killed (SIGKILL: Terraform cannot release
    # its state lock or write its state). Each call below says whether it may run again:
    # init, workspace select/delete, plan, show, output and state list change no
    # infrastructure and are retried. apply and destroy are not: killed half-way they may
    # have created or deleted resources the state does not record, and a remote backend's
    # lock stays held, so a blind rerun fails on the lock or plans from a stale state.

    def prepare(self, workdir: Path, module_dir: Path, workspace: str) -> None:
        """Initialise ``workdir`` from ``module_dir`` and select (or create) ``workspace``.

        A fresh (empty) working directory is populated by ``terraform init
        -from-module``. One this driver populated before is brought up to date with
        the module (changed files are copied, files gone from the module removed;
        state is never touched) and initialised again, which is idempotent.

        Raises:
            InvalidInputError: The module holds no Terraform files, or the workspace
                name is invalid.
            ConflictError: ``workdir`` holds Terraform files this driver did not put there.
            TerraformError: ``terraform init`` failed (backend, configuration, ...).
        """
        module_dir = Path(module_dir).resolve()
        workdir = Path(workdir)
        _check_workspace_name(workspace)
        if not module_dir.is_dir() or not any(_is_config(p) for p in module_dir.iterdir()):
            raise InvalidInputError(f"terraform module {module_dir} holds no .tf files")
        # The state (and its backup) hold cluster credentials: only the owner may read them,
        # also where an earlier version left them readable.
        private_state(workdir)
        marker = workdir / WORKDIR_MARKER
        if {entry.name for entry in workdir.iterdir()} <= {".terraform"}:
            # Brand new (at most a .terraform left by a failed init): Terraform
            # copies the module itself; it refuses any directory with more in it.
            run(self.init_command(workdir, module_dir), classify=classify, timeout_is_retryable=True)
        else:
            copy = _snapshot(workdir, _module_copy_entries(workdir))
            wanted = _snapshot(module_dir, _module_copy_entries(module_dir))
            if copy != wanted:
                # Without the marker this may be anybody's directory: never
                # delete files there. (With it, or with an exact copy left by an
                # init that failed half-way, the directory is ours.)
                if not marker.exists():
                    raise ConflictError(
                        f"terraform working directory {workdir} holds files fleet-sandbox did not create"
                    )
                _refresh_module_copy(workdir, module_dir)
            run(self.init_command(workdir), classify=classify, timeout_is_retryable=True)
        marker.write_text(f"{module_dir}\n", encoding="utf-8")
        run(self.select_workspace_command(workdir, workspace), classify=classify, timeout_is_retryable=True)

    def plan(self, workdir: Path, variables: Mapping[str, Any], *, destroy: bool = False) -> PlanSummary:
        """Save a plan in ``workdir`` and summarise it from ``terraform show -json``.

        Args:
            workdir: The prepared working directory.
            variables: Module variables; :class:`~pydantic.SecretStr` values are secret.
            destroy: Plan the destruction of everything instead.

        Raises:
            StateLockedError: Another run holds the state lock.
            TerraformError: Invalid configuration, missing or invalid variables, ...
        """
        workdir = Path(workdir)
        text, secrets = variables_json(variables)
        secrets = secrets + self.sensitive_values(workdir)
        with _var_file(text) as var_file:
            # Retried after a timeout: a plan changes no infrastructure and writes only its
            # plan file. (Killed, it may leave a remote backend's lock held: the rerun then
            # reports the lock and its holder, see classify.)
            done = run(
                self.plan_command(workdir, var_file, destroy=destroy, redact=secrets),
                classify=classify,
                timeout_is_retryable=True,
            )
        plan_path = workdir / PLAN_FILE
        # The plan file holds every variable value, secrets included.
        plan_path.chmod(0o600)
        shown = run(
            self.command(workdir, "show", PLAN_FILE, no_color=IsFlagged, json=IsFlagged),
            classify=classify,
            timeout_is_retryable=True,
        )
        try:
            document = json.loads(shown.stdout)
        except json.JSONDecodeError as exc:
            raise TerraformError(f"terraform show -json in {workdir} printed no JSON plan") from exc
        return parse_plan_json(document, text=done.stdout, plan_file=str(plan_path))

    def apply(
        self, workdir: Path, variables: Mapping[str, Any], *, plan: PlanSummary | None = None
    ) -> dict[str, TerraformOutput]:
        """Apply the saved ``plan``, or plan and apply ``variables`` in one step.

        Args:
            workdir: The prepared working directory.
            variables: Module variables (only used without ``plan``: a saved plan
                carries its own; their secrets are still redacted from errors).
            plan: A summary returned by :meth:`plan` for this working directory.

        Returns:
            The outputs after the apply.

        Raises:
            InvalidInputError: ``plan`` has no saved plan file.
            StateLockedError: Another run holds the state lock.
            TerraformError: The apply failed (a stale plan, a failing provisioner, ...).
        """
        workdir = Path(workdir)
        text, secrets = variables_json(variables)
        secrets = secrets + self.sensitive_values(workdir)
        try:
            if plan is None:
                with _var_file(text) as var_file:
                    run(
                        self.apply_command(workdir, var_file=var_file, redact=secrets),
                        classify=classify,
                        timeout_is_retryable=False,
                        timeout_note=INTERRUPTED_CHANGE_NOTE,
                    )
            else:
                if not plan.plan_file:
                    raise InvalidInputError("the plan to apply was not saved to a file")
                try:
                    run(
                        self.apply_command(workdir, plan_file=plan.plan_file, redact=secrets),
                        classify=classify,
                        timeout_is_retryable=False,
                        timeout_note=INTERRUPTED_CHANGE_NOTE,
                    )
                finally:
                    # Used (or stale) either way, and it holds every variable's value.
                    Path(plan.plan_file).unlink(missing_ok=True)
        except SandboxError:
            # A failed apply may have created credentials before it failed (and printed
            # them): registered now, they are redacted wherever the error's text goes.
            self.sensitive_values(workdir)
            raise
        return self.outputs(workdir)

    def outputs(self, workdir: Path) -> dict[str, TerraformOutput]:
        """The root module's outputs in the selected workspace (``output -json``).

        Raises:
            TerraformError: Terraform failed or printed something other than JSON.
        """
        done = run(
            self.command(Path(workdir), "output", no_color=IsFlagged, json=IsFlagged),
            classify=classify,
            timeout_is_retryable=True,
        )
        try:
            document = json.loads(done.stdout or "{}")
        except json.JSONDecodeError as exc:
            raise TerraformError(f"terraform output -json in {workdir} printed no JSON") from exc
        outputs = {
            name: TerraformOutput(value=item.get("value"), sensitive=bool(item.get("sensitive", False)))
            for name, item in document.items()
        }
        _register_sensitive(outputs.values())
        return outputs

    def sensitive_values(self, workdir: Path) -> tuple[str, ...]:
        """The string values of the sensitive outputs in the current state (for redaction).

        Terraform marks an *output* sensitive, but the resource attribute behind it
        may be printed in plan text (``[id=...]``, ``id = "..."``); every command
        that can print it redacts these. Nothing is known before the first apply.
        """
        done = run(
            self.command(Path(workdir), "output", no_color=IsFlagged, json=IsFlagged),
            check=False,
            timeout_is_retryable=True,
        )
        if done.returncode != 0:
            return ()
        try:
            document = json.loads(done.stdout or "{}")
        except json.JSONDecodeError:
            return ()
        found: list[str] = []
        for item in document.values():
            if isinstance(item, dict) and item.get("sensitive"):
                found.extend(_strings(item.get("value")))
        _register_sensitive(
            TerraformOutput(value=item.get("value"), sensitive=True)
            for item in document.values()
            if isinstance(item, dict) and item.get("sensitive")
        )
        return tuple(sorted({v for v in found if v}, key=len, reverse=True))

    def destroy(self, workdir: Path, variables: Mapping[str, Any]) -> None:
        """Destroy everything in the selected workspace.

        Raises:
            StateLockedError: Another run holds the state lock.
            TerraformError: A resource could not be deleted (e.g. the module's
                check for dangling external resources failed).
        """
        workdir = Path(workdir)
        text, secrets = variables_json(variables)
        secrets = secrets + self.sensitive_values(workdir)
        with _var_file(text) as var_file:
            run(
                self.destroy_command(workdir, var_file, redact=secrets),
                classify=classify,
                timeout_is_retryable=False,
                timeout_note=INTERRUPTED_CHANGE_NOTE,
            )
        # The backup is the state before the destroy: the credentials of a cluster that is
        # gone, kept on disk for nothing. The emptied state itself stays (terraform's record).
        workspace = run(
            self.command(workdir, "workspace show"), classify=classify, timeout_is_retryable=True
        ).stdout.strip()
        state_backup(workdir, workspace).unlink(missing_ok=True)

    def has_state(self, workdir: Path, workspace: str) -> bool:
        """Whether ``workspace`` tracks any resource (``state list``).

        A workspace that does not exist has no state; it is not created.
        """
        workdir = Path(workdir)
        if workspace not in self.workspaces(workdir):
            return False
        # TF_WORKSPACE reads another workspace without changing the selection.
        command = self.command(workdir, "state list", env={"TF_WORKSPACE": workspace})
        done = run(command, check=False, timeout_is_retryable=True)
        if done.returncode != 0:
            if "No state file was found" in done.stderr:
                return False
            raise classify(done)
        return any(line.strip() for line in done.stdout.splitlines())

    def workspaces(self, workdir: Path) -> list[str]:
        """The workspaces of the working directory's backend (``workspace list``)."""
        done = run(self.command(Path(workdir), "workspace list"), classify=classify, timeout_is_retryable=True)
        return [line.strip().removeprefix("* ").strip() for line in done.stdout.splitlines() if line.strip()]

    def delete_workspace(self, workdir: Path, workspace: str) -> None:
        """Delete ``workspace``, which must track no resources; nothing to do when it is gone.

        Raises:
            InvalidInputError: ``workspace`` is ``default`` (Terraform never deletes it).
            TerraformError: The workspace still tracks resources.
        """
        workdir = Path(workdir)
        if workspace == "default":
            raise InvalidInputError("the default terraform workspace cannot be deleted")
        if workspace not in self.workspaces(workdir):
            return
        current = run(
            self.command(workdir, "workspace show"), classify=classify, timeout_is_retryable=True
        ).stdout.strip()
        if current == workspace:
            # Terraform refuses to delete the selected workspace.
            run(
                self.command(workdir, "workspace select", "default", no_color=IsFlagged),
                classify=classify,
                timeout_is_retryable=True,
            )
        # Retried after a timeout: a rerun lists the workspaces first and is done when it is gone.
        run(
            self.command(workdir, "workspace delete", workspace, no_color=IsFlagged, lock_timeout=self.lock_timeout),
            classify=classify,
            timeout_is_retryable=True,
        )


# -- helpers ---------------------------------------------------------------------------


def _register_sensitive(outputs: Iterable[TerraformOutput]) -> None:
    """Register every sensitive output's strings for redaction; a kubeconfig also by its parts."""
    for output in outputs:
        if not output.sensitive:
            continue
        register_secrets(_strings(output.value))
        if isinstance(output.value, str) and "users:" in output.value:
            register_kubeconfig(output.value)


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value long enough to be a credential (short ones would garble the text)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str) and len(value) >= 4:
        yield value


def state_backup(workdir: Path, workspace: str) -> Path:
    """Where the local backend keeps ``workspace``'s ``terraform.tfstate.backup`` in ``workdir``."""
    if workspace == "default":
        return workdir / "terraform.tfstate.backup"
    return workdir / "terraform.tfstate.d" / workspace / "terraform.tfstate.backup"


def private_state(workdir: Path) -> None:
    """Make a working directory and the terraform state in it private to the owner.

    The directory and every workspace directory become ``0700``, every state file
    and backup ``0600``; new ones are made so by the process umask
    (:func:`sandbox.hardening.harden_process`). This covers what an earlier run
    (or a process without that umask) left readable.
    """
    private_directory(workdir)
    workspaces = workdir / "terraform.tfstate.d"
    if workspaces.is_dir():
        private_directory(workspaces)
        for directory in workspaces.iterdir():
            if directory.is_dir() and not directory.is_symlink():
                private_directory(directory)
    for state in [*workdir.glob("terraform.tfstate*"), *workspaces.glob("*/terraform.tfstate*")]:
        if state.is_file() and not state.is_symlink():
            private_file(state)


def _check_workspace_name(workspace: str) -> None:
    if not _WORKSPACE_NAME.fullmatch(workspace):
        raise InvalidInputError(f"invalid terraform workspace name {workspace!r}")


def _is_config(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tf", ".tf.json"))


def _module_copy_entries(directory: Path) -> list[Path]:
    """Top-level entries that are (a copy of) the module: not hidden, not Terraform's state."""
    return sorted(
        entry for entry in directory.iterdir() if not entry.name.startswith(".") and entry.name not in _TERRAFORM_OWNED
    )


def _walk_files(entry: Path) -> Iterator[Path]:
    # Hidden names are skipped at every level, as `init -from-module` does.
    if entry.name.startswith("."):
        return
    if entry.is_dir():
        for child in sorted(entry.iterdir()):
            yield from _walk_files(child)
    elif entry.is_file():
        yield entry


def _snapshot(root: Path, entries: Sequence[Path]) -> dict[str, str]:
    """Relative path → content digest of every file under ``entries``."""
    snapshot: dict[str, str] = {}
    for entry in entries:
        for path in _walk_files(entry):
            snapshot[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return snapshot


def _refresh_module_copy(workdir: Path, module_dir: Path) -> None:
    """Replace the module copy in ``workdir`` (state and Terraform's files stay)."""
    for entry in _module_copy_entries(workdir):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in _module_copy_entries(module_dir):
        if entry.is_dir():
            shutil.copytree(entry, workdir / entry.name, ignore=shutil.ignore_patterns(".*"))
        else:
            shutil.copy2(entry, workdir / entry.name)


def _plain_value(value: Any, secrets: list[str]) -> Any:
    """``value`` as JSON-ready data; secret strings are collected into ``secrets``."""
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        secrets.append(secret)
        return secret
    if isinstance(value, SecretBytes):
        secret = value.get_secret_value().decode("utf-8")
        secrets.append(secret)
        return secret
    if isinstance(value, BaseModel):
        return _plain_value(value.model_dump(mode="python"), secrets)
    if isinstance(value, Mapping):
        return {str(key): _plain_value(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain_value(item, secrets) for item in value]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Enum):
        return _plain_value(value.value, secrets)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise InvalidInputError(f"a terraform variable value of type {type(value).__name__} is not JSON data")


def variables_json(variables: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The var-file text for ``variables`` and the secret values it contains.

    Raises:
        InvalidInputError: A name is not a Terraform identifier or a value is not JSON data.
    """
    secrets: list[str] = []
    document: dict[str, Any] = {}
    for name, value in variables.items():
        if not _VARIABLE_NAME.fullmatch(name):
            raise InvalidInputError(f"invalid terraform variable name {name!r}")
        document[name] = _plain_value(value, secrets)
    register_secrets(secrets)
    return json.dumps(document, indent=2, sort_keys=True), tuple(s for s in secrets if s)


@contextmanager
def _var_file(text: str) -> Iterator[Path]:
    """A private ``*.tfvars.json`` holding ``text``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="fleet-sandbox-tfvars-") as directory:
        path = Path(directory) / "sandbox.tfvars.json"
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        yield path
