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

/* ABI.md "Interruption": the host sets this word; every loop head reads it
 * (code inserted by internal/interruptpass) and calls the import when it is
 * not zero. Defined here, in both the reactor and the command module, and
 * exported from both as a global holding its address; 8-byte aligned so
 * nothing else shares its word. */
__attribute__((aligned(8))) volatile int32_t wsgi_interrupt_flag;
IMPORT("interrupt") void host_interrupt(void);

/* wsgi_interrupt_poll lets C code poll too; it also keeps the import linked. */
__attribute__((export_name("wsgi_interrupt_poll"))) void wsgi_interrupt_poll(void) {
	if (wsgi_interrupt_flag) {
		host_interrupt();
	}
}

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

/* The str of each environ key, and of each short value, by its place in the
 * host's encoding, kept from the last request: the next request sends mostly
 * the same ones in the same order (REQUEST_METHOD, SERVER_PROTOCOL, "GET",
 * "HTTP/1.1"...), and a kept str needs neither a new object nor, as a dict
 * key, hashing again. A str is immutable, so sharing one gives a request
 * nothing of another's but equal text; values longer than
 * ENVIRON_CACHE_VALUE are never kept. */
#define ENVIRON_CACHE 64
#define ENVIRON_CACHE_VALUE 32
static PyObject *environ_keys[ENVIRON_CACHE], *environ_values[ENVIRON_CACHE];

static PyObject *environ_str(PyObject **kept, const uint8_t *s, Py_ssize_t n) {
	PyObject *k = *kept;
	if (k != NULL && PyUnicode_GET_LENGTH(k) == n && memcmp(PyUnicode_1BYTE_DATA(k), s, n) == 0) {
		Py_INCREF(k);
		return k;
	}
	PyObject *str = PyUnicode_DecodeLatin1((const char *)s, n, NULL);
	if (str != NULL) {
		Py_INCREF(str);
		Py_XSETREF(*kept, str);
	}
	return str;
}

/* environ(base=None) -> dict: the request's CGI-style variables, values
 * decoded as latin-1 as PEP 3333 requires; then, if given, the items of the
 * dict base (which win), and wsgi.url_scheme "http" if the host sent none. */
static PyObject *wsgi_environ(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
	PyObject *base = nargs > 0 ? args[0] : Py_None;
	if (nargs > 1 || (base != Py_None && !PyDict_Check(base))) {
		PyErr_SetString(PyExc_TypeError, "environ() takes an optional dict");
		return NULL;
	}
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
	for (int i = 0; env != NULL && p < end; i++) {
		const uint8_t *k = p, *kz = memchr(k, 0, end - k);
		const uint8_t *v = kz ? kz + 1 : NULL, *vz = v ? memchr(v, 0, end - v) : NULL;
		if (vz == NULL) {
			PyErr_SetString(PyExc_ValueError, "malformed environ buffer from host");
			Py_CLEAR(env);
			break;
		}
		PyObject *key, *val;
		if (i < ENVIRON_CACHE) {
			key = environ_str(&environ_keys[i], k, kz - k);
			val = vz - v <= ENVIRON_CACHE_VALUE ? environ_str(&environ_values[i], v, vz - v)
							    : PyUnicode_DecodeLatin1((const char *)v, vz - v, NULL);
		} else {
			key = PyUnicode_DecodeLatin1((const char *)k, kz - k, NULL);
			val = PyUnicode_DecodeLatin1((const char *)v, vz - v, NULL);
		}
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
	if (env != NULL && base != Py_None) {
		static PyObject *url_scheme, *http;
		if (url_scheme == NULL) {
			url_scheme = PyUnicode_InternFromString("wsgi.url_scheme");
			http = PyUnicode_InternFromString("http");
		}
		if (url_scheme == NULL || http == NULL || PyDict_Merge(env, base, 1) != 0 ||
		    PyDict_SetDefault(env, url_scheme, http) == NULL) {
			Py_CLEAR(env);
		}
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

static int send_body(const uint8_t *p, Py_ssize_t left);

/* write(bytes) -> None: one response body chunk, sent and flushed before
 * this returns. Raises OSError when the client went away. */
static PyObject *wsgi_write(PyObject *self, PyObject *arg) {
	Py_buffer view;
	if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) {
		return NULL;
	}
	int rc = send_body(view.buf, view.len);
	PyBuffer_Release(&view);
	if (rc != 0) {
		return NULL;
	}
	Py_RETURN_NONE;
}

/* The response half of PEP 3333 (start_response, write) in C: the checks
 * of the status and headers are those the bootstrap made in Python before,
 * with the same messages, raised as _wsgi_bootstrap.HeaderError when the
 * app calls start_response. The host checks everything again. */

static PyObject *HeaderError; /* _wsgi_bootstrap.HeaderError */
static PyObject *write_name;  /* "write", interned */

static const char *const HOP_BY_HOP[] = {
	"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
	"te", "trailers", "transfer-encoding", "upgrade",
};

/* The name of a checked text in messages: "status", "header name", or
 * "header NAME value". */
enum { TEXT_STATUS, TEXT_NAME, TEXT_VALUE };

static PyObject *text_what(int what, PyObject *name) {
	switch (what) {
	case TEXT_STATUS:
		return PyUnicode_FromString("status");
	case TEXT_NAME:
		return PyUnicode_FromString("header name");
	default:
		return PyUnicode_FromFormat("header %U value", name);
	}
}

static void header_error(int what, PyObject *name, const char *format, PyObject *value) {
	PyObject *w = text_what(what, name);
	if (w != NULL) {
		PyErr_Format(HeaderError, format, w, value);
		Py_DECREF(w);
	}
}

/* check_text: value is a str without CR, LF or NUL, all latin-1. */
static int check_text(int what, PyObject *name, PyObject *value) {
	if (!PyUnicode_CheckExact(value)) {
		PyObject *w = text_what(what, name);
		if (w != NULL) {
			PyErr_Format(HeaderError, "%U must be str, not %s", w, _PyType_Name(Py_TYPE(value)));
			Py_DECREF(w);
		}
		return -1;
	}
	if (PyUnicode_READY(value) != 0) {
		return -1;
	}
	Py_ssize_t len = PyUnicode_GET_LENGTH(value);
	int kind = PyUnicode_KIND(value);
	const void *data = PyUnicode_DATA(value);
	if (kind == PyUnicode_1BYTE_KIND) {
		const Py_UCS1 *p = data;
		for (Py_ssize_t i = 0; i < len; i++) {
			if (p[i] == '\r' || p[i] == '\n' || p[i] == 0) {
				header_error(what, name, "%U contains CR, LF or NUL: %R", value);
				return -1;
			}
		}
		return 0;
	}
	for (Py_ssize_t i = 0; i < len; i++) {
		Py_UCS4 c = PyUnicode_READ(kind, data, i);
		if (c == '\r' || c == '\n' || c == 0) {
			header_error(what, name, "%U contains CR, LF or NUL: %R", value);
			return -1;
		}
	}
	/* A ready str of a wider kind holds a character past U+00FF. */
	header_error(what, name, "%U is not latin-1: %R", value);
	return -1;
}

static int is_hop_by_hop(const Py_UCS1 *name, Py_ssize_t len) {
	for (size_t i = 0; i < sizeof HOP_BY_HOP / sizeof HOP_BY_HOP[0]; i++) {
		const char *h = HOP_BY_HOP[i];
		if ((Py_ssize_t)strlen(h) != len) {
			continue;
		}
		Py_ssize_t j = 0;
		/* name.lower() of a latin-1 str changes only A-Z into ASCII */
		while (j < len && (name[j] >= 'A' && name[j] <= 'Z' ? name[j] + 32 : name[j]) == (Py_UCS1)h[j]) {
			j++;
		}
		if (j == len) {
			return 1;
		}
	}
	return 0;
}

static void append_text(char **out, PyObject *s) {
	Py_ssize_t n = PyUnicode_GET_LENGTH(s);
	memcpy(*out, PyUnicode_1BYTE_DATA(s), n);
	(*out)[n] = 0;
	*out += n + 1;
}

/* encode_start(status, headers) -> bytes: checks the status and headers as
 * PEP 3333 and HTTP want and encodes them for response_start (ABI.md
 * "response_start"): latin-1, each part ended by NUL. Raises HeaderError. */
static PyObject *encode_start(PyObject *status, PyObject *headers) {
	if (check_text(TEXT_STATUS, NULL, status) != 0) {
		return NULL;
	}
	/* code, _, reason = status.partition(" ") */
	Py_ssize_t slen = PyUnicode_GET_LENGTH(status);
	const Py_UCS1 *s = PyUnicode_1BYTE_DATA(status);
	const Py_UCS1 *sp = memchr(s, ' ', slen);
	if (sp == NULL || sp - s != 3 || !Py_UNICODE_ISDIGIT(s[0]) || !Py_UNICODE_ISDIGIT(s[1]) ||
	    !Py_UNICODE_ISDIGIT(s[2]) || s[0] == '0' || sp + 1 == s + slen) {
		PyErr_Format(HeaderError, "status must be 'NNN Reason', got %R", status);
		return NULL;
	}
	if (!PyList_CheckExact(headers)) {
		PyErr_Format(HeaderError, "headers must be a list, not %s", _PyType_Name(Py_TYPE(headers)));
		return NULL;
	}
	/* No Python code runs from here to the copy below (reprs only on the
	 * way out), so the list cannot change under the loops. */
	Py_ssize_t total = slen + 1;
	Py_ssize_t count = PyList_GET_SIZE(headers);
	for (Py_ssize_t i = 0; i < count; i++) {
		PyObject *item = PyList_GET_ITEM(headers, i);
		if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
			PyObject *r = PyObject_Repr(item);
			if (r != NULL) {
				PyErr_Format(HeaderError, "each header must be a (name, value) tuple: %U", r);
				Py_DECREF(r);
			}
			return NULL;
		}
		PyObject *name = PyTuple_GET_ITEM(item, 0), *value = PyTuple_GET_ITEM(item, 1);
		if (check_text(TEXT_NAME, NULL, name) != 0 || check_text(TEXT_VALUE, name, value) != 0) {
			return NULL;
		}
		Py_ssize_t nlen = PyUnicode_GET_LENGTH(name);
		const Py_UCS1 *n = PyUnicode_1BYTE_DATA(name);
		int bad = nlen == 0;
		for (Py_ssize_t j = 0; j < nlen && !bad; j++) {
			bad = strchr(" \t:()<>@,;\\\"/[]?={}", n[j]) != NULL;
		}
		if (bad) {
			PyErr_Format(HeaderError, "invalid header name %R", name);
			return NULL;
		}
		if (is_hop_by_hop(n, nlen)) {
			PyErr_Format(HeaderError, "hop-by-hop header %R is the server's to set", name);
			return NULL;
		}
		total += nlen + 1 + PyUnicode_GET_LENGTH(value) + 1;
	}
	PyObject *out = PyBytes_FromStringAndSize(NULL, total);
	if (out == NULL) {
		return NULL;
	}
	char *p = PyBytes_AS_STRING(out);
	append_text(&p, status);
	for (Py_ssize_t i = 0; i < count; i++) {
		PyObject *item = PyList_GET_ITEM(headers, i);
		append_text(&p, PyTuple_GET_ITEM(item, 0));
		append_text(&p, PyTuple_GET_ITEM(item, 1));
	}
	return out;
}

static PyObject *wsgi_encode_start(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
	if (nargs != 2) {
		PyErr_Format(PyExc_TypeError, "encode_start() takes 2 arguments (%zd given)", nargs);
		return NULL;
	}
	return encode_start(args[0], args[1]);
}

/* send_start hands encoded status and headers to the host. */
static int send_start(PyObject *encoded) {
	Py_ssize_t len = PyBytes_GET_SIZE(encoded);
	if (len > INT32_MAX || host_response_start((const uint8_t *)PyBytes_AS_STRING(encoded), (int32_t)len) != 0) {
		PyErr_SetString(PyExc_ValueError, "host rejected the response status or headers");
		return -1;
	}
	return 0;
}

/* send_body sends one body chunk, flushed before it returns. */
static int send_body(const uint8_t *p, Py_ssize_t left) {
	int32_t rc = 0;
	while (left > 0 && rc == 0) {
		int32_t chunk = left > INT32_MAX ? INT32_MAX : (int32_t)left;
		rc = host_response_write(p, chunk);
		p += chunk;
		left -= chunk;
	}
	if (rc != 0) {
		PyErr_SetString(PyExc_OSError, "response body: client disconnected");
		return -1;
	}
	return 0;
}

/* Response: start_response and write() for one request; a new one for
 * every request. */
typedef struct {
	PyObject_HEAD
	PyObject *pending; /* encoded status and headers (bytes), NULL before start_response */
	char sent;         /* the headers went to the host */
} Response;

static const char NO_START[] = "the app returned or wrote a body before calling start_response";

static void response_dealloc(Response *self) {
	Py_XDECREF(self->pending);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int response_send_headers(Response *self) {
	if (self->pending == NULL) {
		PyErr_SetString(PyExc_AssertionError, NO_START);
		return -1;
	}
	if (!self->sent) {
		if (send_start(self->pending) != 0) {
			return -1;
		}
		self->sent = 1;
	}
	return 0;
}

/* start_response(status, headers, exc_info=None) -> write */
static PyObject *response_start_response(Response *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
	static const char *const names[] = {"status", "headers", "exc_info"};
	PyObject *given[3] = {NULL, NULL, NULL};
	if (nargs > 3) {
		PyErr_Format(PyExc_TypeError, "start_response() takes from 2 to 3 positional arguments but %zd were given", nargs);
		return NULL;
	}
	for (Py_ssize_t i = 0; i < nargs; i++) {
		given[i] = args[i];
	}
	Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
	for (Py_ssize_t k = 0; k < nkw; k++) {
		PyObject *key = PyTuple_GET_ITEM(kwnames, k);
		int j = 0;
		while (j < 3 && PyUnicode_CompareWithASCIIString(key, names[j]) != 0) {
			j++;
		}
		if (j == 3) {
			PyErr_Format(PyExc_TypeError, "start_response() got an unexpected keyword argument '%U'", key);
			return NULL;
		}
		if (given[j] != NULL) {
			PyErr_Format(PyExc_TypeError, "start_response() got multiple values for argument '%s'", names[j]);
			return NULL;
		}
		given[j] = args[nargs + k];
	}
	if (given[0] == NULL || given[1] == NULL) {
		PyErr_Format(PyExc_TypeError, "start_response() missing required argument '%s'",
			     given[0] == NULL ? names[0] : names[1]);
		return NULL;
	}
	PyObject *exc_info = given[2];
	if (exc_info != NULL && exc_info != Py_None) {
		if (self->sent) {
			/* raise exc_info[1].with_traceback(exc_info[2]) */
			PyObject *value = PySequence_GetItem(exc_info, 1);
			PyObject *tb = value ? PySequence_GetItem(exc_info, 2) : NULL;
			PyObject *exc = tb ? PyObject_CallMethod(value, "with_traceback", "O", tb) : NULL;
			Py_XDECREF(value);
			Py_XDECREF(tb);
			if (exc != NULL) {
				if (PyExceptionInstance_Check(exc)) {
					PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
				} else {
					PyErr_SetString(PyExc_TypeError, "exceptions must derive from BaseException");
				}
				Py_DECREF(exc);
			}
			return NULL;
		}
	} else if (self->pending != NULL) {
		PyErr_SetString(PyExc_AssertionError, "start_response called twice without exc_info");
		return NULL;
	}
	PyObject *encoded = encode_start(given[0], given[1]);
	if (encoded == NULL) {
		return NULL;
	}
	Py_XSETREF(self->pending, encoded);
	return PyObject_GetAttr((PyObject *)self, write_name);
}

/* write(data) -> None: one body chunk; the headers go out with the first
 * non-empty one (PEP 3333). */
static PyObject *response_write(Response *self, PyObject *data) {
	if (!PyBytes_CheckExact(data)) {
		PyErr_Format(PyExc_TypeError, "response body chunks must be bytes, not %s", _PyType_Name(Py_TYPE(data)));
		return NULL;
	}
	if (self->pending == NULL) {
		PyErr_SetString(PyExc_AssertionError, NO_START);
		return NULL;
	}
	Py_ssize_t len = PyBytes_GET_SIZE(data);
	if (len > 0 && (response_send_headers(self) != 0 || send_body((const uint8_t *)PyBytes_AS_STRING(data), len) != 0)) {
		return NULL;
	}
	Py_RETURN_NONE;
}

/* send_headers() -> None: the headers, if no chunk has sent them. */
static PyObject *response_send_headers_py(Response *self, PyObject *unused) {
	if (response_send_headers(self) != 0) {
		return NULL;
	}
	Py_RETURN_NONE;
}

static PyObject *response_get_sent(Response *self, void *closure) { return PyBool_FromLong(self->sent); }

static PyMethodDef response_methods[] = {
	{"start_response", (PyCFunction)(void (*)(void))response_start_response, METH_FASTCALL | METH_KEYWORDS,
	 "start_response(status, headers, exc_info=None) -> write"},
	{"write", (PyCFunction)response_write, METH_O, "write(data) -> send one response body chunk"},
	{"send_headers", (PyCFunction)response_send_headers_py, METH_NOARGS,
	 "send_headers() -> send the status and headers if no body chunk has"},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef response_getset[] = {
	{"sent", (getter)response_get_sent, NULL, "whether the headers went to the host", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ResponseType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "_wsgi_host.Response",
	.tp_basicsize = sizeof(Response),
	.tp_dealloc = (destructor)response_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "start_response and write() for one request",
	.tp_methods = response_methods,
	.tp_getset = response_getset,
	.tp_new = PyType_GenericNew,
};

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
	{"environ", (PyCFunction)(void (*)(void))wsgi_environ, METH_FASTCALL,
	 "environ(base=None) -> dict of the current request's variables, then base's"},
	{"readinto", wsgi_readinto, METH_O, "readinto(buffer) -> bytes read from the request body, 0 at its end"},
	{"start", wsgi_start, METH_O, "start(encoded) -> send status and headers before the first body chunk"},
	{"write", wsgi_write, METH_O, "write(data) -> send one response body chunk"},
	{"encode_start", (PyCFunction)(void (*)(void))wsgi_encode_start, METH_FASTCALL,
	 "encode_start(status, headers) -> checked status and headers encoded for start()"},
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

PyMODINIT_FUNC PyInit__wsgi_host(void) {
	PyObject *m = PyModule_Create(&module);
	if (m == NULL) {
		return NULL;
	}
	if (HeaderError == NULL) {
		/* Named as when the bootstrap defined it, for the tenant's log. */
		HeaderError = PyErr_NewExceptionWithDoc("_wsgi_bootstrap.HeaderError",
							"The app's status or headers break PEP 3333 or HTTP.",
							NULL, NULL);
	}
	if (write_name == NULL) {
		write_name = PyUnicode_InternFromString("write");
	}
	if (HeaderError == NULL || write_name == NULL || PyType_Ready(&ResponseType) != 0 ||
	    PyModule_AddObjectRef(m, "HeaderError", HeaderError) != 0 ||
	    PyModule_AddObjectRef(m, "Response", (PyObject *)&ResponseType) != 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
