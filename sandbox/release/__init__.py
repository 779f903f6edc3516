"""Releases of the platform stack, Prefect-free.

The seed's last promotion steps, as plain functions over the git driver, the OCI
registry driver and the git-hosting driver:

1. **Publish** (:mod:`sandbox.release.publish`: :func:`~sandbox.release.publish.tag_release`
   then :func:`~sandbox.release.publish.publish_artifact`, or
   :func:`~sandbox.release.publish.release`): compute the next version from the existing
   tags (git and registry; :mod:`sandbox.release.decision`), put an annotated tag on the
   default branch of the fleet remote, package the tagged commit's ``platform/``
   directory as a Flux OCI artifact and push it. An existing tag is never moved or
   overwritten; a git tag whose artifact is missing (a push that failed half-way) is
   finished instead of bumped past.
2. **Plan** (:func:`sandbox.release.plan.release_plan`): what each long-lived environment
   runs before and after a release, reading the cluster files as Flux reads them
   (``.spec.ref`` of the ``platform`` source in ``clusters/<env>/platform.yaml``;
   :mod:`sandbox.release.platform_source`) and the registry's tags. Without a version the
   plan is about the newest published release (before = the registry without it, after =
   with it); with ``version`` it is about publishing that version. A release the staging
   range does not admit is flagged with a suggested range, which
   :func:`sandbox.release.proposals.propose_range` proposes as a pull request.
3. **Production** (:mod:`sandbox.release.production`): bump the fixed ``.spec.ref.tag`` of
   production's source by a pull request whose diff is that one scalar (round-trip
   edit). The approval gate lives in the Prefect flow; rolling back is the same proposal
   with an earlier tag.

Every step works on a fresh temporary clone of the fleet remote (under
``<state_dir>/release/``; :class:`sandbox.release.context.ReleaseContext`), so concurrent
runs never share a working tree and nothing stale survives a crash. Which registry and
credentials a release uses: :mod:`sandbox.release.settings`.
"""
