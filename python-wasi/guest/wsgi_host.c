/*
 * wsgi_host.c: the _wsgi_host builtin module, the guest half of the host ABI.
 *
 * Each function wraps one import of the "wsgi_host" host module described in
 * hostabi/ABI.md; the Python bootstrap (bootstrap.py) builds PEP 3333 on top.
 * Buffers always belong to the guest: the host writes at most the limit it is
 * given and returns the length it needed, so the guest can retry bigger.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <wasi/api.h>

#define IMPORT(name) __attribute__((import_module("wsgi_host"), import_name(name)))

/* ABI.md "request_environ" */
IMPORT("request_environ") int32_t host_request_environ(uint8_t *buf, int32_t limit);
/* ABI.md "input_read" */
IMPORT("input_read") int32_t host_input_read(uint8_t *buf, int32_t limit);
/* ABI.md "response_start" */
IMPORT("response_start") int32_t host_response_start(const uint8_t *buf, int32_t len);
/* ABI.md "response_write" */
IMPORT("response_write") int32_t host_response_write(const uint8_t *buf, int32_t len);
/* ABI.md "log_write" */
IMPORT("log_write") void host_log_write(int32_t level, const uint8_t *buf, int32_t len);

#define ENVIRON_FIRST_TRY 8192

/* environ() -> dict[str, str]: the request's CGI-style variables, values
 * decoded as latin-1 as PEP 3333 requires. */
static PyObject *wsgi_environ(PyObject *self, PyObject *unused) {
	static uint8_t first[ENVIRON_FIRST_TRY];
	uint8_t *buf = first;
	int32_t n = host_request_environ(buf, sizeof first);
	if (n > (int32_t)sizeof first) {
		buf = PyMem_Malloc(n);
		if (buf == NULL) {
			return PyErr_NoMemory();
		}
		int32_t again = host_request_environ(buf, n);
		if (again != n) {
			PyMem_Free(buf);
			PyErr_SetString(PyExc_RuntimeError, "request_environ changed length between calls");
			return NULL;
		}
	}
	PyObject *env = PyDict_New();
	const uint8_t *p = buf, *end = buf + (n > 0 ? n : 0);
	while (env != NULL && p < end) {
		const uint8_t *k = p, *kz = memchr(k, 0, end - k);
		const uint8_t *v = kz ? kz + 1 : NULL, *vz = v ? memchr(v, 0, end - v) : NULL;
		if (vz == NULL) {
			PyErr_SetString(PyExc_ValueError, "malformed environ buffer from host");
			Py_CLEAR(env);
			break;
		}
		PyObject *key = PyUnicode_DecodeLatin1((const char *)k, kz - k, NULL);
		PyObject *val = PyUnicode_DecodeLatin1((const char *)v, vz - v, NULL);
		if (key == NULL || val == NULL || PyDict_SetItem(env, key, val) != 0) {
			Py_CLEAR(env);
		}
		Py_XDECREF(key);
		Py_XDECREF(val);
		p = vz + 1;
	}
	if (buf != first) {
		PyMem_Free(buf);
	}
	return env;
}

/* readinto(buffer) -> int: reads request body bytes into a writable buffer;
 * 0 means the body has ended. Raises OSError when the client went away. */
static PyObject *wsgi_readinto(PyObject *self, PyObject *arg) {
	Py_buffer view;
	if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0) {
		return NULL;
	}
	Py_ssize_t want = view.len > INT32_MAX ? INT32_MAX : view.len;
	int32_t n = host_input_read(view.buf, (int32_t)want);
	PyBuffer_Release(&view);
	if (n < 0) {
		PyErr_SetString(PyExc_OSError, "request body: client disconnected or read failed");
		return NULL;
	}
	return PyLong_FromLong(n);
}

/* start(bytes) -> None: status and headers, encoded as ABI.md says. Raises
 * ValueError when the host rejects them. */
static PyObject *wsgi_start(PyObject *self, PyObject *arg) {
	Py_buffer view;
	if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) {
		return NULL;
	}
	int32_t rc = view.len > INT32_MAX ? -1 : host_response_start(view.buf, (int32_t)view.len);
	PyBuffer_Release(&view);
	if (rc != 0) {
		PyErr_SetString(PyExc_ValueError, "host rejected the response status or headers");
		return NULL;
	}
	Py_RETURN_NONE;
}

/* write(bytes) -> None: one response body chunk, sent and flushed before
 * this returns. Raises OSError when the client went away. */
static PyObject *wsgi_write(PyObject *self, PyObject *arg) {
	Py_buffer view;
	if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) {
		return NULL;
	}
	const uint8_t *p = view.buf;
	Py_ssize_t left = view.len;
	int32_t rc = 0;
	while (left > 0 && rc == 0) {
		int32_t chunk = left > INT32_MAX ? INT32_MAX : (int32_t)left;
		rc = host_response_write(p, chunk);
		p += chunk;
		left -= chunk;
	}
	PyBuffer_Release(&view);
	if (rc != 0) {
		PyErr_SetString(PyExc_OSError, "response body: client disconnected");
		return NULL;
	}
	Py_RETURN_NONE;
}

/* log(level, message) -> None: a line for the tenant's error log. */
static PyObject *wsgi_log(PyObject *self, PyObject *args) {
	int level;
	const char *msg;
	Py_ssize_t len;
	if (!PyArg_ParseTuple(args, "is#", &level, &msg, &len)) {
		return NULL;
	}
	host_log_write(level, (const uint8_t *)msg, len > INT32_MAX ? INT32_MAX : (int32_t)len);
	Py_RETURN_NONE;
}

/* process_args() -> list[str]: the WASI arguments as they are now, decoded
 * as the interpreter decodes sys.argv. An instance restored from a base image
 * has other arguments than the one that made it (ABI.md "Base images"). */
static PyObject *wsgi_process_args(PyObject *self, PyObject *unused) {
	__wasi_size_t argc = 0, size = 0;
	if (__wasi_args_sizes_get(&argc, &size) != 0) {
		PyErr_SetString(PyExc_OSError, "args_sizes_get failed");
		return NULL;
	}
	char **argv = PyMem_Calloc(argc + 1, sizeof(char *));
	char *buf = PyMem_Malloc(size ? size : 1);
	PyObject *list = NULL;
	if (argv == NULL || buf == NULL) {
		PyErr_NoMemory();
	} else if (__wasi_args_get((uint8_t **)argv, (uint8_t *)buf) != 0) {
		PyErr_SetString(PyExc_OSError, "args_get failed");
	} else if ((list = PyList_New(argc)) != NULL) {
		for (__wasi_size_t i = 0; i < argc; i++) {
			PyObject *arg = PyUnicode_DecodeFSDefault(argv[i]);
			if (arg == NULL) {
				Py_CLEAR(list);
				break;
			}
			PyList_SET_ITEM(list, i, arg);
		}
	}
	PyMem_Free(argv);
	PyMem_Free(buf);
	return list;
}

extern char **environ;
void __wasilibc_deinitialize_environ(void);
void __wasilibc_initialize_environ(void);

/* process_environ() -> dict[bytes, bytes]: reloads the C library's
 * environment from the WASI environment as it is now and returns it, for
 * os.environ to be rebuilt from (ABI.md "Base images"). */
static PyObject *wsgi_process_environ(PyObject *self, PyObject *unused) {
	__wasilibc_deinitialize_environ();
	__wasilibc_initialize_environ();
	PyObject *env = PyDict_New();
	for (char **e = environ; env != NULL && e != NULL && *e != NULL; e++) {
		const char *eq = strchr(*e, '=');
		if (eq == NULL) {
			continue;
		}
		PyObject *key = PyBytes_FromStringAndSize(*e, eq - *e);
		PyObject *val = PyBytes_FromString(eq + 1);
		if (key == NULL || val == NULL || PyDict_SetItem(env, key, val) != 0) {
			Py_CLEAR(env);
		}
		Py_XDECREF(key);
		Py_XDECREF(val);
	}
	return env;
}

static PyMethodDef methods[] = {
	{"environ", wsgi_environ, METH_NOARGS, "environ() -> dict of the current request's variables"},
	{"readinto", wsgi_readinto, METH_O, "readinto(buffer) -> bytes read from the request body, 0 at its end"},
	{"start", wsgi_start, METH_O, "start(encoded) -> send status and headers before the first body chunk"},
	{"write", wsgi_write, METH_O, "write(data) -> send one response body chunk"},
	{"log", wsgi_log, METH_VARARGS, "log(level, message) -> write to the tenant's error log"},
	{"process_args", wsgi_process_args, METH_NOARGS, "process_args() -> the WASI arguments as they are now"},
	{"process_environ", wsgi_process_environ, METH_NOARGS,
	 "process_environ() -> reload the C environment from WASI and return it"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "_wsgi_host",
	"The guest half of the wsgi-wasm host ABI (see hostabi/ABI.md).", -1, methods,
};

PyMODINIT_FUNC PyInit__wsgi_host(void) { return PyModule_Create(&module); }
