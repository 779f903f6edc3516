// Command semver-peer picks, per input line, the tag Flux's source-controller would pick for a semver range.
//
// Input: JSON lines {"range": "...", "tags": ["..."], "filter": "..."} on stdin ("filter" is optional and plays
// OCIRepository's spec.ref.semverFilter, a Go regexp that tags must match before semver parsing).
// Output: one JSON line per input line: the chosen tag as a string, null when no tag satisfies the range, or
// {"error": "..."} when the range, the filter or the line itself is invalid (Flux reports an error there).
//
// The logic mirrors source-controller v1.9.4 internal/controller/ocirepository_controller.go getTagBySemver with
// github.com/fluxcd/pkg/version v0.16.0 ParseVersion; the code is restated here, not imported, so that the peer
// depends on nothing but the semver library at the version Flux uses.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
)

type request struct {
	Range  string   `json:"range"`
	Tags   []string `json:"tags"`
	Filter string   `json:"filter"`
}

// parseVersion is fluxcd/pkg/version.ParseVersion: a version needs exactly three dot-separated parts (so "1.2" and
// "v1" are ignored, though semver.NewVersion would coerce them), while a "v" prefix and leading zeros are accepted.
func parseVersion(v string) (*semver.Version, error) {
	if len(strings.SplitN(v, ".", 3)) != 3 {
		return nil, semver.ErrInvalidSemVer
	}
	return semver.NewVersion(v)
}

// pick is getTagBySemver without the registry: filter, parse (invalid tags are skipped), check the constraint,
// then sort.Sort(sort.Reverse(...)) exactly as Flux does (not a stable sort, so ties such as "1.0.0" and "v1.0.0"
// resolve as Flux resolves them for the same input order), and return the original spelling of the first.
func pick(req request) (any, error) {
	tags := req.Tags
	if req.Filter != "" {
		match, err := regexp.Compile(req.Filter)
		if err != nil {
			return nil, err
		}
		kept := []string{}
		for _, tag := range tags {
			if match.MatchString(tag) {
				kept = append(kept, tag)
			}
		}
		tags = kept
	}
	constraint, err := semver.NewConstraint(req.Range)
	if err != nil {
		return nil, fmt.Errorf("semver '%s' parse error: %w", req.Range, err)
	}
	var matching []*semver.Version
	for _, tag := range tags {
		v, err := parseVersion(tag)
		if err != nil {
			continue
		}
		if constraint.Check(v) {
			matching = append(matching, v)
		}
	}
	if len(matching) == 0 {
		return nil, nil
	}
	sort.Sort(sort.Reverse(semver.Collection(matching)))
	return matching[0].Original(), nil
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 64<<20) // tag lists of big registries exceed the default 64 KiB line
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false) // print tags as they are ("1.0.0+a<b" stays readable)
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "" {
			continue
		}
		var req request
		var result any
		if err := json.Unmarshal([]byte(line), &req); err != nil {
			result = map[string]string{"error": "invalid input line: " + err.Error()}
		} else if tag, err := pick(req); err != nil {
			result = map[string]string{"error": err.Error()}
		} else {
			result = tag
		}
		if err := enc.Encode(result); err != nil {
			fmt.Fprintln(os.Stderr, "semver-peer:", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "semver-peer:", err)
		os.Exit(1)
	}
}
