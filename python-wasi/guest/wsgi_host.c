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

/* ABI.md "Outbound connections": each returns a result >= 0, or -errno */
IMPORT("net_connect") int32_t host_net_connect(const uint8_t *host, int32_t len, int32_t port, int32_t timeout_ms);
IMPORT("net_send") int32_t host_net_send(int32_t h, const uint8_t *buf, int32_t len, int32_t timeout_ms);
IMPORT("net_recv") int32_t host_net_recv(int32_t h, uint8_t *buf, int32_t limit, int32_t timeout_ms, int32_t flags);
IMPORT("net_poll") int32_t host_net_poll(uint8_t *entries, int32_t count, int32_t timeout_ms);
IMPORT("net_shutdown") int32_t host_net_shutdown(int32_t h, int32_t how);
IMPORT("net_close") int32_t host_net_close(int32_t h);
IMPORT("net_info") int32_t host_net_info(int32_t h, int32_t what, uint8_t *buf, int32_t limit);
IMPORT("net_tls_handshake") int32_t host_net_tls_handshake(int32_t h, const uint8_t *cfg, int32_t len, int32_t timeout_ms);
IMPORT("net_last_error") int32_t host_net_last_error(uint8_t *buf, int32_t limit);
/* ABI.md "pbkdf2_hmac": 0, or -errno */
IMPORT("pbkdf2_hmac") int32_t host_pbkdf2_hmac(const uint8_t *hash, int32_t hash_len, const uint8_t *password,
					       int32_t password_len, const uint8_t *salt, int32_t salt_len,
					       int32_t iterations, uint8_t *out, int32_t dklen);

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

/* The net_* wrappers below only move numbers and buffers: they return the
 * host's result (negative: -errno) and leave errors to _wsgi_socket.py, which
 * raises what CPython's _socket would. */

static int32_t clamp_len(Py_ssize_t n) { return n > INT32_MAX ? INT32_MAX : (int32_t)n; }

/* net_connect(host: bytes, port, timeout_ms) -> handle or -errno */
static PyObject *wsgi_net_connect(PyObject *self, PyObject *args) {
	Py_buffer host;
	int port, timeout_ms;
	if (!PyArg_ParseTuple(args, "y*ii", &host, &port, &timeout_ms)) {
		return NULL;
	}
	int32_t rc = host.len > 1024 ? -28 : host_net_connect(host.buf, (int32_t)host.len, port, timeout_ms);
	PyBuffer_Release(&host);
	return PyLong_FromLong(rc);
}

/* net_send(handle, data, timeout_ms) -> bytes sent or -errno */
static PyObject *wsgi_net_send(PyObject *self, PyObject *args) {
	int h, timeout_ms;
	Py_buffer data;
	if (!PyArg_ParseTuple(args, "iy*i", &h, &data, &timeout_ms)) {
		return NULL;
	}
	int32_t rc = host_net_send(h, data.buf, clamp_len(data.len), timeout_ms);
	PyBuffer_Release(&data);
	return PyLong_FromLong(rc);
}

/* net_recv(handle, buffer, timeout_ms, flags) -> bytes read (0: end) or -errno */
static PyObject *wsgi_net_recv(PyObject *self, PyObject *args) {
	int h, timeout_ms, flags;
	Py_buffer buf;
	if (!PyArg_ParseTuple(args, "iw*ii", &h, &buf, &timeout_ms, &flags)) {
		return NULL;
	}
	int32_t rc = host_net_recv(h, buf.buf, clamp_len(buf.len), timeout_ms, flags);
	PyBuffer_Release(&buf);
	return PyLong_FromLong(rc);
}

/* net_poll(entries: bytearray of 8-byte pollfds, timeout_ms) -> ready count or -errno */
static PyObject *wsgi_net_poll(PyObject *self, PyObject *args) {
	Py_buffer buf;
	int timeout_ms;
	if (!PyArg_ParseTuple(args, "w*i", &buf, &timeout_ms)) {
		return NULL;
	}
	int32_t rc = host_net_poll(buf.buf, clamp_len(buf.len / 8), timeout_ms);
	PyBuffer_Release(&buf);
	return PyLong_FromLong(rc);
}

static PyObject *wsgi_net_shutdown(PyObject *self, PyObject *args) {
	int h, how;
	if (!PyArg_ParseTuple(args, "ii", &h, &how)) {
		return NULL;
	}
	return PyLong_FromLong(host_net_shutdown(h, how));
}

static PyObject *wsgi_net_close(PyObject *self, PyObject *arg) {
	int h = PyLong_AsLong(arg);
	if (h == -1 && PyErr_Occurred()) {
		return NULL;
	}
	return PyLong_FromLong(host_net_close(h));
}

/* net_info(handle, what) -> bytes, or -errno */
static PyObject *wsgi_net_info(PyObject *self, PyObject *args) {
	int h, what;
	if (!PyArg_ParseTuple(args, "ii", &h, &what)) {
		return NULL;
	}
	uint8_t first[512];
	int32_t n = host_net_info(h, what, first, sizeof first);
	if (n < 0) {
		return PyLong_FromLong(n);
	}
	if (n <= (int32_t)sizeof first) {
		return PyBytes_FromStringAndSize((const char *)first, n);
	}
	PyObject *out = PyBytes_FromStringAndSize(NULL, n);
	if (out == NULL) {
		return NULL;
	}
	int32_t again = host_net_info(h, what, (uint8_t *)PyBytes_AS_STRING(out), n);
	if (again != n) {
		Py_DECREF(out);
		return PyLong_FromLong(again < 0 ? again : -29);
	}
	return out;
}

/* net_tls_handshake(handle, config: bytes, timeout_ms) -> 0, 1, 2 or -errno */
static PyObject *wsgi_net_tls_handshake(PyObject *self, PyObject *args) {
	int h, timeout_ms;
	Py_buffer cfg;
	if (!PyArg_ParseTuple(args, "iy*i", &h, &cfg, &timeout_ms)) {
		return NULL;
	}
	int32_t rc = host_net_tls_handshake(h, cfg.buf, clamp_len(cfg.len), timeout_ms);
	PyBuffer_Release(&cfg);
	return PyLong_FromLong(rc);
}

/* net_last_error() -> str: the message of the last failed net_* call */
static PyObject *wsgi_net_last_error(PyObject *self, PyObject *unused) {
	uint8_t first[1024];
	int32_t n = host_net_last_error(first, sizeof first);
	if (n <= (int32_t)sizeof first) {
		return PyUnicode_DecodeUTF8((const char *)first, n < 0 ? 0 : n, "replace");
	}
	uint8_t *buf = PyMem_Malloc(n);
	if (buf == NULL) {
		return PyErr_NoMemory();
	}
	int32_t again = host_net_last_error(buf, n);
	PyObject *out = PyUnicode_DecodeUTF8((const char *)buf, again == n ? n : 0, "replace");
	PyMem_Free(buf);
	return out;
}

/* The largest dklen the host takes (ABI.md "pbkdf2_hmac"): a larger one
 * is refused here, before the key's buffer is allocated. */
#define PBKDF2_MAX_KEYLEN 65536

/* pbkdf2_hmac(hash: str, password, salt, iterations, dklen) -> bytes, or
 * -errno for the caller (_wsgi_hashlib.py) to fall back on CPython's
 * pure-Python function. */
static PyObject *wsgi_pbkdf2_hmac(PyObject *self, PyObject *args) {
	const char *name;
	Py_ssize_t name_len;
	Py_buffer password, salt;
	long long iterations, dklen;
	if (!PyArg_ParseTuple(args, "s#y*y*LL", &name, &name_len, &password, &salt, &iterations, &dklen)) {
		return NULL;
	}
	PyObject *out = NULL;
	int32_t rc = 0;
	if (iterations < 1 || dklen < 1 || name_len > 16) {
		rc = -28; /* EINVAL */
	} else if (iterations > INT32_MAX || dklen > PBKDF2_MAX_KEYLEN || password.len > INT32_MAX || salt.len > INT32_MAX) {
		rc = -1; /* E2BIG */
	} else if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)dklen)) != NULL) {
		rc = host_pbkdf2_hmac((const uint8_t *)name, (int32_t)name_len, password.buf, (int32_t)password.len,
				      salt.buf, (int32_t)salt.len, (int32_t)iterations,
				      (uint8_t *)PyBytes_AS_STRING(out), (int32_t)dklen);
	}
	PyBuffer_Release(&password);
	PyBuffer_Release(&salt);
	if (out == NULL && rc == 0) {
		return NULL; /* MemoryError */
	}
	if (rc != 0) {
		Py_XDECREF(out);
		return PyLong_FromLong(rc);
	}
	return out;
}

static PyMethodDef methods[] = {
	{"pbkdf2_hmac", wsgi_pbkdf2_hmac, METH_VARARGS,
	 "pbkdf2_hmac(hash, password, salt, iterations, dklen) -> key, or -errno (hostabi/ABI.md \"pbkdf2_hmac\")"},
	{"net_connect", wsgi_net_connect, METH_VARARGS, "net_connect(host, port, timeout_ms) -> handle or -errno"},
	{"net_send", wsgi_net_send, METH_VARARGS, "net_send(handle, data, timeout_ms) -> sent or -errno"},
	{"net_recv", wsgi_net_recv, METH_VARARGS, "net_recv(handle, buffer, timeout_ms, flags) -> read or -errno"},
	{"net_poll", wsgi_net_poll, METH_VARARGS, "net_poll(entries, timeout_ms) -> ready or -errno"},
	{"net_shutdown", wsgi_net_shutdown, METH_VARARGS, "net_shutdown(handle, how) -> 0 or -errno"},
	{"net_close", wsgi_net_close, METH_O, "net_close(handle) -> 0 or -errno"},
	{"net_info", wsgi_net_info, METH_VARARGS, "net_info(handle, what) -> bytes or -errno"},
	{"net_tls_handshake", wsgi_net_tls_handshake, METH_VARARGS, "net_tls_handshake(handle, config, timeout_ms) -> 0, 1, 2 or -errno"},
	{"net_last_error", wsgi_net_last_error, METH_NOARGS, "net_last_error() -> message of the last failure"},
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
