// Package spenddata locates the real public spend files the tests,
// benchmarks and fuzz seeds share: eight bodies' "spend over £500" (or
// £25,000) files, copied byte for byte and cut to 2,000 lines, each laid
// out differently (files/README.md says whose each is, its licence and its
// quirks). They live in the repository so no test skips for want of them.
package spenddata

import (
	"path/filepath"
	"runtime"
)

// Names are the files' names without ".csv", as their mappings in
// harmony/testdata/mappings are named.
var Names = []string{"cabinet-office", "darlington", "gateshead", "lambeth", "leeds", "manchester", "network-rail", "trafford"}

// Dir is the absolute path of the directory holding the files.
func Dir() string {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		panic("spenddata: cannot locate its own source file")
	}
	return filepath.Join(filepath.Dir(self), "files")
}

// Path is the absolute path of the named file ("lambeth" → …/lambeth.csv).
func Path(name string) string {
	return filepath.Join(Dir(), name+".csv")
}
