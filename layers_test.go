package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The layers of bes, lowest first. A package may import packages of its
// own layer and of lower ones, never of a higher one (tests included):
// the reading of BEP (bepfile/...) knows nothing of the store or the
// command line, and the store nothing of the command line. bepfile/wire,
// the wire vocabulary, imports no package of bes at all (its test reads
// the generated descriptors of bepfile/bep).
const module = "github.com/bes-cli/bes"

type layerRule struct {
	from     string   // a package and the packages below it
	denied   []string // packages (and the packages below them) it must not import; a trailing / denies what is below only
	codeOnly bool     // the rule holds for the package's code, not its tests
}

var layerRules = []layerRule{
	{from: module + "/bepfile/wire", denied: []string{module + "/"}, codeOnly: true},
	{from: module + "/bepfile", denied: []string{module + "/store", module + "/commands"}},
	{from: module + "/store", denied: []string{module + "/commands"}},
	// The gRPC adapters use the storage contract (store.Backend) only;
	// their tests may run on a concrete backend.
	{from: module + "/store/server", denied: []string{module + "/store/local"}, codeOnly: true},
}

// under reports whether pkg is path or below it.
func under(pkg, path string) bool {
	if strings.HasSuffix(path, "/") {
		return strings.HasPrefix(pkg, path)
	}
	return pkg == path || strings.HasPrefix(pkg, path+"/")
}

// listedPackage is what `go list -json` says of a package that the rules
// read.
type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// layerViolations returns one line per import that breaks a rule.
func layerViolations(pkgs []listedPackage) []string {
	var out []string
	for _, p := range pkgs {
		all := slices.Concat(p.Imports, p.TestImports, p.XTestImports)
		slices.Sort(all)
		all = slices.Compact(all)
		for _, r := range layerRules {
			if !under(p.ImportPath, r.from) {
				continue
			}
			imports := all
			if r.codeOnly {
				imports = p.Imports
			}
			for _, imp := range imports {
				if imp == p.ImportPath {
					continue // an external test package imports its own
				}
				for _, d := range r.denied {
					if under(imp, d) && !under(imp, r.from) {
						out = append(out, fmt.Sprintf("%s imports %s: a package under %s must not import %s", p.ImportPath, imp, r.from, strings.TrimSuffix(d, "/")))
					}
				}
			}
		}
	}
	return out
}

// TestLayers checks every package of the module, its tests' imports
// included, against the layer rules, with `go list -json ./...`.
func TestLayers(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	cmd := exec.Command(goCmd, "list", "-json", "./...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	// The rules must have something to check: the layers exist.
	for _, want := range []string{module + "/bepfile", module + "/bepfile/wire", module + "/bepfile/invocation", module + "/store", module + "/commands"} {
		if !slices.ContainsFunc(pkgs, func(p listedPackage) bool { return p.ImportPath == want }) {
			t.Fatalf("go list did not list %s", want)
		}
	}
	for _, v := range layerViolations(pkgs) {
		t.Error(v)
	}
}

// TestLayerViolations: the rules catch an import from a lower layer into a
// higher one, in a package or its tests, and let the others be.
func TestLayerViolations(t *testing.T) {
	pkgs := []listedPackage{
		{ImportPath: module + "/bepfile/invocation", Imports: []string{module + "/bepfile", module + "/bepfile/wire", "fmt"}, TestImports: []string{module + "/store"}},
		{ImportPath: module + "/bepfile/wire", Imports: []string{"google.golang.org/protobuf/encoding/protowire", module + "/bepfile"}, TestImports: []string{module + "/bepfile/bep/buildeventstream"}},
		{ImportPath: module + "/store/query", Imports: []string{module + "/store", module + "/bepfile", module + "/commands"}},
		{ImportPath: module + "/storefront", Imports: []string{module + "/commands"}}, // not under store
		{ImportPath: module + "/commands", Imports: []string{module + "/store/local", module + "/bepfile/invocation"}},
	}
	got := layerViolations(pkgs)
	want := []string{
		module + "/bepfile/invocation imports " + module + "/store: a package under " + module + "/bepfile must not import " + module + "/store",
		module + "/bepfile/wire imports " + module + "/bepfile: a package under " + module + "/bepfile/wire must not import " + module,
		module + "/store/query imports " + module + "/commands: a package under " + module + "/store must not import " + module + "/commands",
	}
	if !slices.Equal(got, want) {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
