// Package deps fills a tenant's site-packages/ from its requirements file and
// folders of wheels, by running pip inside the sandboxed interpreter (see
// "Dependencies" in the README for why pip, and why in the sandbox).
package deps

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/wsgi-wasm/wsgi-wasm/internal/tenantfs"
)

// RequirementsFile and PyprojectFile are where a tenant declares what it
// needs, read in this order.
const (
	RequirementsFile = "requirements.txt"
	PyprojectFile    = "pyproject.toml"
)

// Spec is what a tenant declares it needs.
type Spec struct {
	// From is the file read (requirements.txt, pyproject.toml or the
	// file given); set also when reading it failed.
	From string
	// Lines are requirement lines without comments; the lines of files
	// included with -r follow in place of the -r line.
	Lines []string
	// Constraints are the lines of the files named by -c lines (their own
	// -r and -c followed), given to pip as one constraints file.
	Constraints []string
}

// Requirements reads the tenant's requirements: dir's requirements.txt
// (nested -r and -c files followed), else the [project] dependencies of its
// pyproject.toml. No file is an error naming both, with From "". The files
// are the tenant's, so they are read as every file of a tenant folder is
// (tenantfs): inside dir only, no symbolic link followed, regular files
// only, at most MaxRequirementsBytes in all.
func Requirements(dir string) (Spec, error) {
	r := &reqReader{spec: Spec{From: filepath.Join(dir, RequirementsFile)}, root: dir}
	err := r.read(RequirementsFile, false, nil, "")
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return r.spec, err
	}
	from := filepath.Join(dir, PyprojectFile)
	data, err := tenantfs.ReadFile(dir, PyprojectFile, MaxRequirementsBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return Spec{}, fmt.Errorf("deps: %s: no %s and no %s", dir, RequirementsFile, PyprojectFile)
	}
	if err != nil {
		return Spec{From: from}, fmt.Errorf("deps: %w", err)
	}
	var p struct {
		Project struct {
			Dependencies []string `toml:"dependencies"`
		} `toml:"project"`
	}
	if _, err := toml.Decode(string(data), &p); err != nil {
		return Spec{From: from}, fmt.Errorf("deps: %s: %w", from, err)
	}
	return Spec{From: from, Lines: p.Project.Dependencies}, nil
}

// MaxRequirementsBytes bounds what is read of a tenant's requirements: its
// requirements.txt and every file it includes, together, or its
// pyproject.toml.
const MaxRequirementsBytes = 1 << 20

// ReadRequirements reads a requirements file as pip does: comments and
// blank lines dropped, a line ending in a backslash joined to the next, and
// the files named by -r / --requirement (read in place) and -c /
// --constraint (into Constraints) followed, their paths relative to the
// file that names them. A file that includes itself, directly or not, is
// an error naming the chain of files. The file is the operator's (install
// -r FILE), so it and its includes may be anywhere; a tenant's are read by
// Requirements.
func ReadRequirements(path string) (Spec, error) {
	r := &reqReader{spec: Spec{From: path}}
	err := r.read(path, false, nil, "")
	return r.spec, err
}

// reqReader gathers the lines of a requirements file and the files it
// includes. With a root (a tenant folder), paths are relative to it and
// read through tenantfs, within a total of MaxRequirementsBytes.
type reqReader struct {
	spec  Spec
	root  string
	total int64 // bytes read so far, with a root
}

// includeOption matches an -r or -c line: the option and the file.
var includeOption = regexp.MustCompile(`^(?:(-r|-c)\s*=?\s*|(--requirement|--constraint)(?:\s*=\s*|\s+))(\S.*)$`)

// shownPath is the path of the requirements file name as errors and loop
// checks show it: absolute, or with a root, inside it.
func (r *reqReader) shownPath(name string) (string, error) {
	if r.root == "" {
		return filepath.Abs(name)
	}
	return filepath.Join(r.root, filepath.FromSlash(name)), nil
}

// file reads the requirements file name, at shown (shownPath's answer).
func (r *reqReader) file(name, shown string) ([]byte, error) {
	if r.root == "" {
		return os.ReadFile(shown)
	}
	data, err := tenantfs.ReadFile(r.root, name, MaxRequirementsBytes-r.total)
	if errors.Is(err, tenantfs.ErrTooLarge) {
		err = fmt.Errorf("the tenant's requirements files are over %d bytes together", MaxRequirementsBytes)
	}
	r.total += int64(len(data))
	return data, err
}

// read adds the lines of the file name to the requirements (or, if
// constraint, to the constraints); chain holds the files being read that
// led to it, and by says where the last of them names it ("" for the first
// file).
func (r *reqReader) read(name string, constraint bool, chain []string, by string) error {
	shown, err := r.shownPath(name)
	if err != nil {
		return fmt.Errorf("deps: %w", err)
	}
	for i, c := range chain {
		if c == shown {
			loop := append(append([]string{}, chain[i:]...), shown)
			return fmt.Errorf("deps: requirements files include each other in a loop: %s", strings.Join(loop, " -> "))
		}
	}
	chain = append(chain, shown)
	data, err := r.file(name, shown)
	if err != nil {
		if by != "" {
			// Not wrapped: only a missing first file means "no requirements.txt".
			return fmt.Errorf("deps: %s: %v", by, err)
		}
		return fmt.Errorf("deps: %w", err)
	}
	for _, ln := range logicalLines(string(data)) {
		l := stripComment(ln.text)
		if l == "" {
			continue
		}
		m := includeOption.FindStringSubmatch(l)
		if m == nil {
			if constraint {
				r.spec.Constraints = append(r.spec.Constraints, l)
			} else {
				r.spec.Lines = append(r.spec.Lines, l)
			}
			continue
		}
		opt, inc := m[1]+m[2], m[3]
		where := fmt.Sprintf("%s line %d: %s %s", shown, ln.number, opt, inc)
		if strings.Contains(inc, "://") {
			return fmt.Errorf("deps: %s: only files can be included, not URLs", where)
		}
		switch {
		case r.root != "":
			// Inside the tenant folder, relative to the including file.
			rel := path.Join(path.Dir(name), filepath.ToSlash(inc))
			if path.IsAbs(filepath.ToSlash(inc)) || rel == ".." || strings.HasPrefix(rel, "../") {
				return fmt.Errorf("deps: %s: a tenant's requirements may include only files of its own folder", where)
			}
			inc = rel
		case !filepath.IsAbs(inc):
			inc = filepath.Join(filepath.Dir(shown), inc)
		}
		if err := r.read(inc, constraint || opt == "-c" || opt == "--constraint", chain, where); err != nil {
			return err
		}
	}
	return nil
}

// line is one logical line of a requirements file and the number of the
// line it starts on.
type line struct {
	text   string
	number int
}

// logicalLines splits a requirements file into lines, a line ending in a
// backslash joined to the next, as pip joins them.
func logicalLines(data string) []line {
	var out []line
	cur := line{}
	for i, text := range strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n") {
		if cur.text == "" {
			cur.number = i + 1
		}
		if strings.HasSuffix(text, "\\") {
			cur.text += strings.TrimSuffix(text, "\\")
			continue
		}
		cur.text += text
		out = append(out, cur)
		cur = line{}
	}
	if cur.text != "" {
		out = append(out, cur)
	}
	return out
}

// comment is a comment as pip reads it: a # at the start of a line or
// after white space, to the end of the line.
var comment = regexp.MustCompile(`(?:^|\s+)#.*$`)

// stripComment drops a comment and the white space around what is left.
func stripComment(l string) string {
	return strings.TrimSpace(comment.ReplaceAllString(l, ""))
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
