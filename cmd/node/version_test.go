package main

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestBuildInfo: the stamped version wins, then the module version Go
// recorded, then "dev"; the revision says when the tree was modified.
func TestBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tc := range []struct {
		stamped string
		bi      *debug.BuildInfo
		ok      bool
		want    buildInfo
	}{
		{"v2.0.0", bi, true, buildInfo{"v2.0.0", "abc123-dirty", "go1.26.8"}},
		{"", bi, true, buildInfo{"v1.2.3", "abc123-dirty", "go1.26.8"}},
		{"", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true, buildInfo{"dev", "unknown", "go1.26.8"}},
		{"", nil, false, buildInfo{"dev", "unknown", "unknown"}},
	} {
		if got := newBuildInfo(tc.stamped, tc.bi, tc.ok); got != tc.want {
			t.Errorf("newBuildInfo(%q, ...) = %+v, want %+v", tc.stamped, got, tc.want)
		}
	}
}

// TestVersionFlag: --version prints the build and exits without starting
// a node.
func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "sluice ") || !strings.Contains(out.String(), "go1") {
		t.Fatalf("--version printed %q", out.String())
	}
}

// TestEndToEndVersionStamped builds the binary as a release is built
// (-ldflags -X main.version=...) and finds the version in --version.
func TestEndToEndVersionStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := t.TempDir() + "/sluice"
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7-test -X main.revision=0123abc", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || string(out) != "sluice v9.8.7-test (revision 0123abc, "+runtime.Version()+")\n" {
		t.Fatalf("--version: %q, %v", out, err)
	}
}

// TestVersionNotFromEnv: --version has no environment equivalent.
// SLUICE_VERSION is the release version deploy/docker/build.sh stamps, and
// left in a release shell (or a pod's environment) it made a node refuse
// to start ("parse error") or print its version and exit 0 instead of
// serving.
func TestVersionNotFromEnv(t *testing.T) {
	for _, v := range []string{"0.1.0", "true", "1"} {
		o, err := parseOptions(nil, func(k string) string {
			if k == "SLUICE_VERSION" {
				return v
			}
			return ""
		}, io.Discard)
		if err != nil || o.showVersion {
			t.Errorf("SLUICE_VERSION=%s: showVersion %v, %v; want a node that starts", v, o.showVersion, err)
		}
	}
}
