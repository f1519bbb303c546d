package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// version and revision are the release version and its VCS revision,
// stamped when a release is built:
//
//	go build -ldflags "-X main.version=v1.4.0 -X main.revision=$(git rev-parse HEAD)" ./cmd/node
//
// (deploy/docker/build.sh does it for the image). They are the package's
// only variables, because the linker can only set variables; nothing
// writes them at run time. Empty in other builds: then what Go recorded is
// used (the module version, the VCS revision), or "dev" and "unknown".
var version, revision string

// buildInfo is what a binary knows of its build.
type buildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"go_version"`
}

// String is the --version line.
func (b buildInfo) String() string {
	return fmt.Sprintf("sluice %s (revision %s, %s)", b.Version, b.Revision, b.GoVersion)
}

// readBuildInfo returns the binary's build information: the stamped
// version if any, else the main module's version as Go recorded it (a
// `go install ...@v1.4.0`), else "dev"; the VCS revision Go embedded
// (suffixed "-dirty" for a modified tree), else "unknown"; and the Go
// version.
func readBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	b := newBuildInfo(version, bi, ok)
	if revision != "" {
		b.Revision = revision
	}
	return b
}

func newBuildInfo(stamped string, bi *debug.BuildInfo, ok bool) buildInfo {
	b := buildInfo{Version: stamped, Revision: "unknown", GoVersion: "unknown"}
	if ok {
		b.GoVersion = bi.GoVersion
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && b.Revision != "unknown" {
			b.Revision += "-dirty"
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	b.Version = strings.TrimSpace(b.Version)
	return b
}

// register exports b as sluice_build_info{version,revision,go_version} 1.
func (b buildInfo) register(reg prometheus.Registerer) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_build_info",
		Help: "Always 1; the labels say which build of sluice runs: version (stamped at release, else the module version, else dev), VCS revision, Go version.",
	}, []string{"version", "revision", "go_version"})
	g.WithLabelValues(b.Version, b.Revision, b.GoVersion).Set(1)
	reg.MustRegister(g)
}
