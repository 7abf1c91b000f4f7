package pglocal

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Binaries are the PostgreSQL server programs a Server runs.
type Binaries struct {
	Dir      string // the directory holding them, symlinks resolved
	Initdb   string // path of initdb
	Postgres string // path of postgres
	Version  int    // major version, e.g. 15
}

// minVersion is the oldest major version supported: postmaster.pid carries
// the readiness status from 10 on; DROP DATABASE … WITH (FORCE), used by
// pgtest, needs 13.
const minVersion = 13

// debianGlob is where Debian and Ubuntu install server binaries, one
// directory per major version.
const debianGlob = "/usr/lib/postgresql/*/bin"

// FindBinaries locates initdb and postgres: first on $PATH (the directory
// initdb resolves to must also hold postgres), then under
// /usr/lib/postgresql/*/bin, newest major version first. It returns an error
// wrapping ErrNotInstalled when none is found.
func FindBinaries(ctx context.Context) (Binaries, error) {
	return findBinaries(ctx, os.Getenv("PATH"), debianGlob)
}

func findBinaries(ctx context.Context, path, glob string) (Binaries, error) {
	var dirs []string
	if p, err := lookPath("initdb", path); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(r))
		}
	}
	dirs = append(dirs, versionDirs(glob)...)
	var tried []string
	for _, d := range dirs {
		b := Binaries{Dir: d, Initdb: filepath.Join(d, "initdb"), Postgres: filepath.Join(d, "postgres")}
		if !isExecutable(b.Initdb) || !isExecutable(b.Postgres) {
			continue
		}
		v, err := serverVersion(ctx, b.Postgres)
		if err != nil {
			tried = append(tried, err.Error())
			continue
		}
		if v < minVersion {
			tried = append(tried, fmt.Sprintf("%s is version %d, need %d or newer", b.Postgres, v, minVersion))
			continue
		}
		b.Version = v
		return b, nil
	}
	if len(tried) > 0 {
		return Binaries{}, fmt.Errorf("%w: %s", ErrNotInstalled, strings.Join(tried, "; "))
	}
	return Binaries{}, ErrNotInstalled
}

// versionDirs lists the directories matching glob, newest version first
// (the version is the path element before bin).
func versionDirs(glob string) []string {
	dirs, _ := filepath.Glob(glob)
	ver := func(d string) float64 {
		f, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return f
	}
	sort.SliceStable(dirs, func(i, j int) bool { return ver(dirs[i]) > ver(dirs[j]) })
	return dirs
}

// lookPath is exec.LookPath over an explicit PATH value.
func lookPath(name, path string) (string, error) {
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// serverVersion runs `postgres -V` and returns the major version.
func serverVersion(ctx context.Context, postgres string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, postgres, "-V").Output()
	if err != nil {
		return 0, fmt.Errorf("%s -V: %w", postgres, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%s -V: unrecognised output %q", postgres, strings.TrimSpace(string(out)))
	}
	return strconv.Atoi(string(m[1]))
}
