// Package pythonwasi hands over the interpreter that the recipe in this
// folder builds: the command and reactor modules and the stdlib zip. It only
// finds the files; running them is the sandbox package's job.
//
// The recipe caches its outputs outside the repository, in a folder named by
// a hash of every input (see build.sh). Locate asks build.sh for that folder,
// so the Go side never repeats the hashing rules.
package pythonwasi

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// EnvDir names the environment variable that points at a built interpreter
// folder directly, bypassing the recipe lookup (e.g. on a host without the
// source tree).
const EnvDir = "WSGI_WASM_PYTHON_DIR"

// Interpreter is one built interpreter folder.
type Interpreter struct {
	Dir string
}

// CommandModule is the path of the module that behaves like `python`.
func (i Interpreter) CommandModule() string { return filepath.Join(i.Dir, "python.wasm") }

// ReactorModule is the path of the module whose exports the host calls.
func (i Interpreter) ReactorModule() string { return filepath.Join(i.Dir, "python-reactor.wasm") }

// LibDir is the folder that holds python311.zip; the guest sees it as
// GuestLibDir.
func (i Interpreter) LibDir() string { return filepath.Join(i.Dir, "lib") }

// GuestLibDir is where the stdlib zip's folder is mounted in the guest.
const GuestLibDir = "/usr/local/lib"

// GuestHome is the guest's PYTHONHOME; GuestLibDir/python311.zip is on
// sys.path because of it.
const GuestHome = "/usr/local"

// Locate finds the interpreter: dir if non-empty, else $WSGI_WASM_PYTHON_DIR,
// else the recipe's cache folder, found by running build.sh dir from the
// python-wasi folder of the source tree that contains the working directory.
func Locate(dir string) (Interpreter, error) {
	if dir == "" {
		dir = os.Getenv(EnvDir)
	}
	if dir == "" {
		recipe, err := findRecipe()
		if err != nil {
			return Interpreter{}, err
		}
		out, err := exec.Command("bash", filepath.Join(recipe, "build.sh"), "dir").Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return Interpreter{}, fmt.Errorf("pythonwasi: %s", strings.TrimSpace(string(ee.Stderr)))
			}
			return Interpreter{}, fmt.Errorf("pythonwasi: run build.sh: %w", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	in := Interpreter{Dir: dir}
	for _, f := range []string{in.CommandModule(), in.ReactorModule(), filepath.Join(in.LibDir(), "python311.zip")} {
		if _, err := os.Stat(f); err != nil {
			return Interpreter{}, fmt.Errorf("pythonwasi: interpreter folder %s is incomplete: %w", dir, err)
		}
	}
	return in, nil
}

// findRecipe walks up from the working directory, then from the running
// executable's folder (bin/wsgi-wasm in a checkout), to the folder holding
// python-wasi/build.sh.
func findRecipe() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, start := range starts {
		for d := start; ; d = filepath.Dir(d) {
			candidate := filepath.Join(d, "python-wasi")
			if _, err := os.Stat(filepath.Join(candidate, "build.sh")); err == nil {
				return candidate, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", fmt.Errorf("pythonwasi: no python-wasi/build.sh above %s; set %s or pass the interpreter folder",
		strings.Join(starts, " or "), EnvDir)
}
