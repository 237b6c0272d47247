/*
 * wsgi_fcntl.c: the fcntl builtin module for the sandbox, in both forms of
 * the interpreter (a constructor adds it to the builtin modules before the
 * interpreter starts).
 *
 * CPython's own fcntl module is not built for WASI: WASI preview 1 has no
 * file locks, so its flock() would fail with EINVAL. Here fcntl(), with
 * F_GETFD, F_SETFD, F_GETFL and F_SETFL, goes to wasi-libc and wazero (F_GETFL
 * reports O_NONBLOCK and O_APPEND, F_SETFL sets them), and
 * the lock calls (flock, lockf, fcntl with F_SETLK, F_SETLKW, F_GETLK) check
 * their arguments and the descriptor, then succeed without locking: a
 * tenant with a data folder has its requests served one at a time under a
 * lock per data folder that `wsgi-wasm exec` takes too, and an instance has
 * one thread, so no other writer can hold the file. See python-wasi/README.md
 * "fcntl".
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

/* Linux's values: WASI defines none of them. */
#define WSGI_LOCK_SH 1
#define WSGI_LOCK_EX 2
#define WSGI_LOCK_NB 4
#define WSGI_LOCK_UN 8
#define WSGI_F_GETLK 5
#define WSGI_F_SETLK 6
#define WSGI_F_SETLKW 7
#define WSGI_F_RDLCK 0
#define WSGI_F_WRLCK 1
#define WSGI_F_UNLCK 2

/* fd_of takes an int or an object with fileno(), as CPython's fcntl does. */
static int fd_of(PyObject *obj) { return PyObject_AsFileDescriptor(obj); }

/* check_open raises OSError(EBADF) unless fd is an open descriptor. */
static int check_open(int fd) {
	struct stat st;
	if (fstat(fd, &st) != 0) {
		PyErr_SetFromErrno(PyExc_OSError);
		return -1;
	}
	return 0;
}

/* check_lock_op accepts LOCK_UN, or LOCK_SH or LOCK_EX, each maybe with
 * LOCK_NB, as Linux's flock(2) does; anything else is EINVAL. */
static int check_lock_op(int op) {
	int base = op & ~WSGI_LOCK_NB;
	if (base != WSGI_LOCK_SH && base != WSGI_LOCK_EX && base != WSGI_LOCK_UN) {
		errno = EINVAL;
		PyErr_SetFromErrno(PyExc_OSError);
		return -1;
	}
	return 0;
}

static PyObject *fcntl_flock(PyObject *self, PyObject *args) {
	PyObject *file;
	int op;
	if (!PyArg_ParseTuple(args, "Oi:flock", &file, &op)) {
		return NULL;
	}
	int fd = fd_of(file);
	if (fd < 0 || check_lock_op(op) != 0 || check_open(fd) != 0) {
		return NULL;
	}
	if (PySys_Audit("fcntl.flock", "ii", fd, op) < 0) {
		return NULL;
	}
	Py_RETURN_NONE;
}

static PyObject *fcntl_lockf(PyObject *self, PyObject *args) {
	PyObject *file, *len = NULL, *start = NULL;
	int cmd, whence = 0;
	if (!PyArg_ParseTuple(args, "Oi|OOi:lockf", &file, &cmd, &len, &start, &whence)) {
		return NULL;
	}
	int fd = fd_of(file);
	if (fd < 0 || check_lock_op(cmd) != 0) {
		return NULL;
	}
	if (whence < 0 || whence > 2) {
		errno = EINVAL;
		return PyErr_SetFromErrno(PyExc_OSError);
	}
	if ((len != NULL && PyNumber_AsSsize_t(len, PyExc_OverflowError) == -1 && PyErr_Occurred()) ||
	    (start != NULL && PyNumber_AsSsize_t(start, PyExc_OverflowError) == -1 && PyErr_Occurred())) {
		return NULL;
	}
	if (check_open(fd) != 0) {
		return NULL;
	}
	if (PySys_Audit("fcntl.lockf", "iiOOi", fd, cmd, len ? len : Py_None, start ? start : Py_None, whence) < 0) {
		return NULL;
	}
	Py_RETURN_NONE;
}

static PyObject *fcntl_fcntl(PyObject *self, PyObject *args) {
	PyObject *file, *arg = NULL;
	int cmd;
	if (!PyArg_ParseTuple(args, "Oi|O:fcntl", &file, &cmd, &arg)) {
		return NULL;
	}
	int fd = fd_of(file);
	if (fd < 0) {
		return NULL;
	}
	if (PySys_Audit("fcntl.fcntl", "iiO", fd, cmd, arg ? arg : Py_None) < 0) {
		return NULL;
	}
	if (cmd == WSGI_F_GETLK || cmd == WSGI_F_SETLK || cmd == WSGI_F_SETLKW) {
		/* The argument is a packed struct flock, as on Linux. */
		Py_buffer view;
		if (arg == NULL || PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) {
			PyErr_Clear();
			PyErr_SetString(PyExc_TypeError, "fcntl: a lock command takes a packed struct flock (bytes)");
			return NULL;
		}
		if (view.len < (Py_ssize_t)sizeof(short) || check_open(fd) != 0) {
			if (!PyErr_Occurred()) {
				errno = EINVAL;
				PyErr_SetFromErrno(PyExc_OSError);
			}
			PyBuffer_Release(&view);
			return NULL;
		}
		PyObject *out = PyBytes_FromStringAndSize(view.buf, view.len);
		PyBuffer_Release(&view);
		if (out != NULL && cmd == WSGI_F_GETLK) {
			/* l_type is the first field: no lock is in the way. */
			short unlocked = WSGI_F_UNLCK;
			memcpy(PyBytes_AS_STRING(out), &unlocked, sizeof unlocked);
		}
		return out;
	}
	int value = 0;
	if (arg != NULL) {
		value = _PyLong_AsInt(arg);
		if (value == -1 && PyErr_Occurred()) {
			return NULL;
		}
	}
	int r = fcntl(fd, cmd, value);
	if (r == -1 && errno == ENOSYS && cmd == F_SETFL && (value & O_NONBLOCK)) {
		/* wazero refuses O_NONBLOCK on files and folders, where Linux
		 * accepts it and reads never block anyway: set the other flags. */
		struct stat st;
		if (fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
			r = fcntl(fd, cmd, value & ~O_NONBLOCK);
		}
	}
	if (r == -1) {
		return PyErr_SetFromErrno(PyExc_OSError);
	}
	return PyLong_FromLong(r);
}

static PyMethodDef methods[] = {
    {"fcntl", fcntl_fcntl, METH_VARARGS,
     "fcntl(fd, cmd, arg=0)\n\nF_GETFD, F_SETFD, F_GETFL and F_SETFL as WASI does them; the lock commands "
     "(F_GETLK, F_SETLK, F_SETLKW) succeed without locking (see python-wasi/README.md)."},
    {"flock", fcntl_flock, METH_VARARGS,
     "flock(fd, operation)\n\nChecks the operation and the descriptor, then succeeds: requests that can "
     "write are already served one at a time (see python-wasi/README.md)."},
    {"lockf", fcntl_lockf, METH_VARARGS,
     "lockf(fd, cmd, len=0, start=0, whence=0)\n\nChecks its arguments and the descriptor, then succeeds, "
     "as flock() does."},
    {NULL, NULL, 0, NULL},
};

static int add_constants(PyObject *m) {
	static const struct {
		const char *name;
		long value;
	} constants[] = {
	    {"LOCK_SH", WSGI_LOCK_SH},
	    {"LOCK_EX", WSGI_LOCK_EX},
	    {"LOCK_NB", WSGI_LOCK_NB},
	    {"LOCK_UN", WSGI_LOCK_UN},
	    {"F_GETFD", F_GETFD},
	    {"F_SETFD", F_SETFD},
	    {"F_GETFL", F_GETFL},
	    {"F_SETFL", F_SETFL},
	    {"F_GETLK", WSGI_F_GETLK},
	    {"F_SETLK", WSGI_F_SETLK},
	    {"F_SETLKW", WSGI_F_SETLKW},
	    {"F_RDLCK", WSGI_F_RDLCK},
	    {"F_WRLCK", WSGI_F_WRLCK},
	    {"F_UNLCK", WSGI_F_UNLCK},
	    {"FD_CLOEXEC", FD_CLOEXEC},
	};
	for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
		if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) != 0) {
			return -1;
		}
	}
	return 0;
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fcntl",
    "fcntl for the wsgi-wasm sandbox: descriptor flags as WASI has them, locks that succeed "
    "(one writer at a time is guaranteed by the host; see python-wasi/README.md).",
    -1, methods,
};

PyMODINIT_FUNC PyInit_fcntl(void) {
	PyObject *m = PyModule_Create(&module);
	if (m != NULL && add_constants(m) != 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}

/* Runs before main (command form) or in _initialize (reactor), so before
 * the interpreter starts, which is when builtins may still be added. */
__attribute__((constructor)) static void register_fcntl(void) { PyImport_AppendInittab("fcntl", PyInit_fcntl); }
