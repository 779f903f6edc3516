// Command semver-peer picks, per input line, the tag Flux's source-controller would pick for a semver range.
//
// Input: JSON lines on stdin, each one of
//
//	{"range": "...", "tags": ["..."], "filter": "..."}  the tag Flux picks ("filter" is optional and plays
//	                                                     OCIRepository's spec.ref.semverFilter, a Go regexp that tags
//	                                                     must match before semver parsing);
//	{"range": "...", "version": "..."}                  whether Masterminds Constraints.Check admits the version,
//	                                                     parsed with semver.NewVersion (no two-dot rule);
//	{"range": "...", "tags": [...], "repeat": N}         the pick N times, answered {"tag": ..., "ns": total}: the
//	                                                     benchmark's in-process timing (bench/resolve.py).
//
// Output: one JSON line per input line: the chosen tag as a string, null when no tag satisfies the range, true or
// false for a version check, or {"error": "..."} when the range, the filter, the version or the line itself is
// invalid (Flux reports an error there). "semver-peer -version" prints the peer's and the library's versions.
//
// The logic mirrors source-controller v1.9.4 internal/controller/ocirepository_controller.go getTagBySemver with
// github.com/fluxcd/pkg/version v0.16.0 ParseVersion; the code is restated here, not imported, so that the peer
// depends on nothing but the semver library at the version Flux uses.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
)

// version is set at build time (-X main.version=...) from toolchain/components.json.
var version = "dev"

type request struct {
	Range   string   `json:"range"`
	Tags    []string `json:"tags"`
	Filter  string   `json:"filter"`
	Version *string  `json:"version"`
	Repeat  int      `json:"repeat"`
}

// parseVersion is fluxcd/pkg/version.ParseVersion: strings.SplitN(v, ".", 3) must give three parts (at least two
// dots, so "1.2" and "v1" are ignored though semver.NewVersion would coerce them), then semver.NewVersion, which
// accepts a "v" prefix and leading zeros.
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

// check is Masterminds' own Constraints.Check of one version (what the library's test table states).
func check(req request) (any, error) {
	constraint, err := semver.NewConstraint(req.Range)
	if err != nil {
		return nil, err
	}
	v, err := semver.NewVersion(*req.Version)
	if err != nil {
		return nil, err
	}
	return constraint.Check(v), nil
}

// timed runs pick req.Repeat times and reports the answer with the total nanoseconds spent in pick.
func timed(req request) (any, error) {
	var tag any
	var err error
	start := time.Now()
	for range req.Repeat {
		if tag, err = pick(req); err != nil {
			return nil, err
		}
	}
	return map[string]any{"tag": tag, "ns": time.Since(start).Nanoseconds()}, nil
}

func answer(line string) any {
	var req request
	if err := json.Unmarshal([]byte(line), &req); err != nil {
		return map[string]string{"error": "invalid input line: " + err.Error()}
	}
	var result any
	var err error
	switch {
	case req.Version != nil:
		result, err = check(req)
	case req.Repeat > 0:
		result, err = timed(req)
	default:
		result, err = pick(req)
	}
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	return result
}

// libraryVersion is the semver module's version as linked into this binary.
func libraryVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/Masterminds/semver/v3" {
				return dep.Path + " " + dep.Version
			}
		}
	}
	return "github.com/Masterminds/semver/v3 (unknown version)"
}

func main() {
	showVersion := flag.Bool("version", false, "print the peer's and the semver library's versions and exit")
	flag.Parse()
	if *showVersion {
		fmt.Printf("semver-peer %s (%s, %s)\n", version, libraryVersion(), runtime.Version())
		return
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 64<<20) // tag lists of big registries exceed the default 64 KiB line
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false) // print tags as they are ("1.0.0+a<b" stays readable)
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "" {
			continue
		}
		// Flushed per line: a caller that writes one request and waits for its answer must get it.
		if err := enc.Encode(answer(line)); err != nil || out.Flush() != nil {
			fmt.Fprintln(os.Stderr, "semver-peer: cannot write the answer")
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "semver-peer:", err)
		os.Exit(1)
	}
}
