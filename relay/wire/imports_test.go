package wire_test

import (
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStdlibOnly: relay/wire imports the standard library only, in its code
// and in its tests, so any client can vendor it and its fuzzing stays
// hermetic. The standard library imports nothing else, so checking direct
// imports covers the whole build.
func TestStdlibOnly(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files found: %v", err)
	}
	const self = "github.com/stapes-relay/stapes/relay/wire"
	fset := token.NewFileSet()
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if path == self && strings.HasSuffix(name, "_test.go") {
				continue
			}
			if !isStdlib(path) {
				t.Errorf("%s imports %q: relay/wire may import the standard library only", name, path)
			}
		}
	}
}

func isStdlib(path string) bool {
	if path == "C" {
		return false
	}
	p, err := build.Default.Import(path, "", build.FindOnly)
	return err == nil && p.Goroot
}
