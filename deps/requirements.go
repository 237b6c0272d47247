// Package deps fills a tenant's site-packages/ from its requirements file and
// folders of wheels, by running pip inside the sandboxed interpreter (see
// "Dependencies" in the README for why pip, and why in the sandbox).
package deps

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
)

// RequirementsFile and PyprojectFile are where a tenant declares what it
// needs, read in this order.
const (
	RequirementsFile = "requirements.txt"
	PyprojectFile    = "pyproject.toml"
)

// Requirements returns the tenant's requirements (one pip requirement a
// line) and the file they came from; no file is an error naming both.
func Requirements(dir string) (lines []string, from string, err error) {
	from = filepath.Join(dir, RequirementsFile)
	if lines, from, err := requirementsFile(from); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return lines, from, err
	}
	from = filepath.Join(dir, PyprojectFile)
	data, err := os.ReadFile(from)
	if os.IsNotExist(err) {
		return nil, "", fmt.Errorf("deps: %s: no %s and no %s", dir, RequirementsFile, PyprojectFile)
	}
	if err != nil {
		return nil, from, fmt.Errorf("deps: %w", err)
	}
	var p struct {
		Project struct {
			Dependencies []string `toml:"dependencies"`
		} `toml:"project"`
	}
	if _, err := toml.Decode(string(data), &p); err != nil {
		return nil, from, fmt.Errorf("deps: %s: %w", from, err)
	}
	return p.Project.Dependencies, from, nil
}

// requirementsFile reads a requirements file's lines, without comments.
func requirementsFile(path string) ([]string, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, path, fmt.Errorf("deps: %w", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if i := strings.Index(l, " #"); i >= 0 {
			l = strings.TrimSpace(l[:i])
		}
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, l)
	}
	return lines, path, nil
}

// requirementName is the project name a requirement line starts with.
var requirementName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*`)

// Names returns the normalized project names of requirement lines (options
// such as -r or --find-links are skipped).
func Names(lines []string) []string {
	var names []string
	for _, l := range lines {
		if strings.HasPrefix(l, "-") {
			continue
		}
		if n := requirementName.FindString(l); n != "" {
			names = append(names, Normalize(n))
		}
	}
	return names
}

var separators = regexp.MustCompile(`[-_.]+`)

// Normalize is a project name's normalized form (PEP 503): lower case, runs
// of -, _ and . as one -.
func Normalize(name string) string {
	return strings.ToLower(separators.ReplaceAllString(name, "-"))
}

// Installed returns the normalized names of the distributions installed in
// a site-packages folder (its *.dist-info and *.egg-info folders).
func Installed(site string) (map[string]bool, error) {
	entries, err := os.ReadDir(site)
	if err != nil {
		return nil, err
	}
	got := map[string]bool{}
	for _, e := range entries {
		n := e.Name()
		for _, suffix := range []string{".dist-info", ".egg-info"} {
			if base, ok := strings.CutSuffix(n, suffix); ok {
				name, _, _ := strings.Cut(base, "-")
				got[Normalize(name)] = true
			}
		}
	}
	return got, nil
}
