// semver-peer: the reference for Flux's semver tag selection, for a differential test against the Python product.
// Masterminds/semver/v3 is pinned to v3.5.0, the version source-controller v1.9.4 requires (its go.mod, and
// github.com/fluxcd/pkg/version v0.16.0 which holds ParseVersion, both require v3.5.0).
module fleet-sandbox/toolchain/semver-peer

go 1.26.0

require github.com/Masterminds/semver/v3 v3.5.0
