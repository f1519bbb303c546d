package cluster

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsRunOneWay keeps the direction of dependency: cmd → transport
// and envoy → cluster → leaves. cluster and the leaves import neither
// transport, envoy, gRPC nor net/http, envoy does not import transport,
// and bucket and ring import no project package at all.
func TestImportsRunOneWay(t *testing.T) {
	const module = "github.com/sluicerl/sluice/"
	for _, dir := range []string{".", "../bucket", "../ring", "../gossip", "../rules", "../envoy"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", dir, err)
		}
		leaf := dir == "../bucket" || dir == "../ring"
		way := dir != "../envoy" // below the ways in
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range file.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				switch {
				case path == module+"transport":
					t.Errorf("%s imports %s: imports run transport → cluster → leaves", f, path)
				case way && (path == module+"envoy" || path == "net/http" || strings.HasPrefix(path, "google.golang.org/grpc")):
					t.Errorf("%s imports %s: imports run transport and envoy → cluster → leaves", f, path)
				case leaf && strings.HasPrefix(path, module):
					t.Errorf("%s imports %s: bucket and ring import no project package", f, path)
				}
			}
		}
	}
}
