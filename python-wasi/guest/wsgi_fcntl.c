/*
 * wsgi_fcntl.c: the fcntl builtin module for the sandbox, in both forms of
 * the interpreter (a constructor adds it to the builtin modules before the
 * interpreter starts), and SQLite's file locks.
 *
 * CPython's own fcntl module is not built for WASI: WASI preview 1 has no
 * file locks, so its flock() would fail with EINVAL. Here fcntl(), with
 * F_GETFD, F_SETFD, F_GETFL and F_SETFL, goes to wasi-libc and wazero (F_GETFL
 * reports O_NONBLOCK and O_APPEND, F_SETFL sets them), and the lock calls
 * (flock, lockf, fcntl with F_SETLK, F_SETLKW, F_GETLK) go to the host's
 * file_lock (hostabi/ABI.md "File locks"), as SQLite's unix VFS does through
 * wsgi_wasm_sqlite_fcntl below: real locks between the instances of a
 * tenant and `wsgi-wasm exec`. See python-wasi/README.md "fcntl".
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* ABI.md "file_lock": op 0 set, 1 test; type 0 unlock, 1 read, 2 write.
 * Returns 0, the type of a lock in the way (testing), or -errno. */
__attribute__((import_module("wsgi_host"), import_name("file_lock"))) int32_t
host_file_lock(uint64_t dev, uint64_t ino, int32_t op, int32_t type, int64_t start, int64_t len);

#define LOCK_OP_SET 0
#define LOCK_OP_TEST 1
#define LOCK_TYPE_UNLOCK 0
#define LOCK_TYPE_READ 1
#define LOCK_TYPE_WRITE 2

/* lock_range sets (op LOCK_OP_SET) or tests a lock of the given type on
 * len bytes (0: to the end and past it) from start, counted from whence, of
 * the file open at fd. With wait, a conflict is retried, sleeping 1 ms and
 * doubling up to 50 ms, until the lock is taken: the sandbox ends the sleep
 * and the call at the request's deadline. Returns 0, or testing the type of
 * the lock in the way (LOCK_TYPE_*, 0 for none); -1 with errno set. */
static int lock_range(int fd, int op, int type, int whence, int64_t start, int64_t len, int wait) {
	struct stat st;
	if (fstat(fd, &st) != 0) {
		return -1;
	}
	switch (whence) {
	case SEEK_SET:
		break;
	case SEEK_CUR: {
		off_t cur = lseek(fd, 0, SEEK_CUR);
		if (cur < 0) {
			return -1;
		}
		start += cur;
		break;
	}
	case SEEK_END:
		start += st.st_size;
		break;
	default:
		errno = EINVAL;
		return -1;
	}
	if (len < 0) {
		/* POSIX: the len bytes before start. */
		start += len;
		len = -len;
	}
	if (start < 0) {
		errno = EINVAL;
		return -1;
	}
	useconds_t pause = 1000;
	for (;;) {
		int32_t r = host_file_lock((uint64_t)st.st_dev, (uint64_t)st.st_ino, op, type, start, len);
		if (r >= 0) {
			return r;
		}
		if (r != -EAGAIN || !wait) {
			errno = -r;
			return -1;
		}
		usleep(pause);
		if (pause < 50000) {
			pause *= 2;
		}
	}
}

/* flock_cmd is fcntl's F_GETLK, F_SETLK and F_SETLKW on a struct flock. */
static int flock_cmd(int fd, int cmd, struct flock *fl) {
	int type;
	switch (fl->l_type) {
	case WSGI_F_RDLCK:
		type = LOCK_TYPE_READ;
		break;
	case WSGI_F_WRLCK:
		type = LOCK_TYPE_WRITE;
		break;
	case WSGI_F_UNLCK:
		type = LOCK_TYPE_UNLOCK;
		break;
	default:
		errno = EINVAL;
		return -1;
	}
	int r = lock_range(fd, cmd == WSGI_F_GETLK ? LOCK_OP_TEST : LOCK_OP_SET, type, fl->l_whence, fl->l_start,
	                   fl->l_len, cmd == WSGI_F_SETLKW);
	if (r < 0) {
		return -1;
	}
	if (cmd == WSGI_F_GETLK) {
		/* Only the type is known of a lock in the way; its pid is -1, as
		 * Linux reports for open-file-description locks. */
		fl->l_type = r == LOCK_TYPE_READ ? WSGI_F_RDLCK : r == LOCK_TYPE_WRITE ? WSGI_F_WRLCK : WSGI_F_UNLCK;
		if (r != 0) {
			fl->l_pid = -1;
		}
	}
	return 0;
}

/* SQLite's fcntl (python-wasi/sqlite/wasi_compat.h renames it): the lock
 * commands lock through the host; every other command goes to wasi-libc.
 * This definition overrides the weak one of libsqlite3.a. */
int wsgi_wasm_sqlite_fcntl(int fd, int cmd, ...) {
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	switch (cmd) {
	case WSGI_F_GETLK:
	case WSGI_F_SETLK:
	case WSGI_F_SETLKW:
		return flock_cmd(fd, cmd, (struct flock *)arg);
	default:
		return fcntl(fd, cmd, (int)(long)arg);
	}
}

/* fd_of takes an int or an object with fileno(), as CPython's fcntl does. */
static int fd_of(PyObject *obj) { return PyObject_AsFileDescriptor(obj); }

/* check_lock_op accepts LOCK_UN, or LOCK_SH or LOCK_EX, each maybe with
 * LOCK_NB, as Linux's flock(2) does; anything else is EINVAL. It returns
 * the lock type of file_lock, or -1 with the exception set. */
static int check_lock_op(int op) {
	switch (op & ~WSGI_LOCK_NB) {
	case WSGI_LOCK_SH:
		return LOCK_TYPE_READ;
	case WSGI_LOCK_EX:
		return LOCK_TYPE_WRITE;
	case WSGI_LOCK_UN:
		return LOCK_TYPE_UNLOCK;
	}
	errno = EINVAL;
	PyErr_SetFromErrno(PyExc_OSError);
	return -1;
}

/* flock locks the whole file, as a byte-range lock of the host (so it
 * conflicts with lockf's and SQLite's locks of other instances, where
 * Linux keeps flock and fcntl locks apart). */
static PyObject *fcntl_flock(PyObject *self, PyObject *args) {
	PyObject *file;
	int op;
	if (!PyArg_ParseTuple(args, "Oi:flock", &file, &op)) {
		return NULL;
	}
	int fd = fd_of(file);
	int type;
	if (fd < 0 || (type = check_lock_op(op)) < 0) {
		return NULL;
	}
	if (PySys_Audit("fcntl.flock", "ii", fd, op) < 0) {
		return NULL;
	}
	if (lock_range(fd, LOCK_OP_SET, type, SEEK_SET, 0, 0, !(op & WSGI_LOCK_NB)) < 0) {
		return PyErr_SetFromErrno(PyExc_OSError);
	}
	Py_RETURN_NONE;
}

/* offset_of is obj (None or absent: 0) as a file offset. */
static int offset_of(PyObject *obj, int64_t *out) {
	*out = 0;
	if (obj == NULL || obj == Py_None) {
		return 0;
	}
	long long v = PyLong_AsLongLong(obj);
	if (v == -1 && PyErr_Occurred()) {
		return -1;
	}
	*out = v;
	return 0;
}

static PyObject *fcntl_lockf(PyObject *self, PyObject *args) {
	PyObject *file, *len = NULL, *start = NULL;
	int cmd, whence = 0;
	if (!PyArg_ParseTuple(args, "Oi|OOi:lockf", &file, &cmd, &len, &start, &whence)) {
		return NULL;
	}
	int fd = fd_of(file);
	int type;
	if (fd < 0 || (type = check_lock_op(cmd)) < 0) {
		return NULL;
	}
	int64_t l, s;
	if (offset_of(len, &l) != 0 || offset_of(start, &s) != 0) {
		return NULL;
	}
	if (PySys_Audit("fcntl.lockf", "iiOOi", fd, cmd, len ? len : Py_None, start ? start : Py_None, whence) < 0) {
		return NULL;
	}
	if (lock_range(fd, LOCK_OP_SET, type, whence, s, l, !(cmd & WSGI_LOCK_NB)) < 0) {
		return PyErr_SetFromErrno(PyExc_OSError);
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
		/* The argument is a packed struct flock of this guest (wasm32
		 * wasi-libc: short l_type, l_whence; 64-bit l_start, l_len; l_pid),
		 * struct.pack("hhqqi"): 28 bytes, or 32 with the tail padding. */
		Py_buffer view;
		if (arg == NULL || PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) {
			PyErr_Clear();
			PyErr_SetString(PyExc_TypeError, "fcntl: a lock command takes a packed struct flock (bytes)");
			return NULL;
		}
		struct flock fl;
		Py_ssize_t n = view.len;
		if (n < (Py_ssize_t)(offsetof(struct flock, l_pid) + sizeof fl.l_pid) || n > (Py_ssize_t)sizeof fl) {
			PyBuffer_Release(&view);
			errno = EINVAL;
			return PyErr_SetFromErrno(PyExc_OSError);
		}
		memset(&fl, 0, sizeof fl);
		memcpy(&fl, view.buf, n);
		PyBuffer_Release(&view);
		if (flock_cmd(fd, cmd, &fl) != 0) {
			return PyErr_SetFromErrno(PyExc_OSError);
		}
		return PyBytes_FromStringAndSize((const char *)&fl, n);
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

/* ioctl: no descriptor of the sandbox is a terminal or a device that takes
 * one, so every request fails as Linux fails it on a regular file. Code that
 * asks a terminal's size (or probes a device) then takes its fallback. */
static PyObject *fcntl_ioctl(PyObject *self, PyObject *args) {
	int fd;
	unsigned long request;
	PyObject *arg = NULL;
	int mutate = 1;
	if (!PyArg_ParseTuple(args, "ik|Op:ioctl", &fd, &request, &arg, &mutate)) {
		return NULL;
	}
	struct stat st;
	errno = fstat(fd, &st) == 0 ? ENOTTY : errno;
	return PyErr_SetFromErrno(PyExc_OSError);
}

static PyMethodDef methods[] = {
    {"ioctl", fcntl_ioctl, METH_VARARGS,
     "ioctl(fd, request, arg=0, mutate_flag=True)\n\nFails with ENOTTY (EBADF for a closed descriptor): the "
     "sandbox has no terminals or devices."},
    {"fcntl", fcntl_fcntl, METH_VARARGS,
     "fcntl(fd, cmd, arg=0)\n\nF_GETFD, F_SETFD, F_GETFL and F_SETFL as WASI does them; the lock commands "
     "(F_GETLK, F_SETLK, F_SETLKW) lock through the host (see python-wasi/README.md)."},
    {"flock", fcntl_flock, METH_VARARGS,
     "flock(fd, operation)\n\nLocks the whole file through the host: other instances and processes are "
     "excluded (see python-wasi/README.md)."},
    {"lockf", fcntl_lockf, METH_VARARGS,
     "lockf(fd, cmd, len=0, start=0, whence=0)\n\nA byte-range lock through the host, as on Linux."},
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
    "fcntl for the wsgi-wasm sandbox: descriptor flags as WASI has them, file locks held by the host "
    "(see python-wasi/README.md).",
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
