/*
 * command.c: main of the command form of the interpreter (python.wasm).
 *
 * It is CPython's own main (Programs/python.c) plus the _wsgi_host builtin,
 * so that a command run in a tenant's sandbox (wsgi-wasm exec) reaches the
 * outbound host functions (hostabi/ABI.md "Outbound connections") through
 * _wsgi_socket, _wsgi_select and _ssl, as the tenant's instances do. Which
 * connections succeed is the host's decision: a run without a connection
 * table (wsgi-wasm python) is refused every one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyMODINIT_FUNC PyInit__wsgi_host(void);

int main(int argc, char **argv) {
	if (PyImport_AppendInittab("_wsgi_host", PyInit__wsgi_host) != 0) {
		return 1;
	}
	return Py_BytesMain(argc, argv);
}
