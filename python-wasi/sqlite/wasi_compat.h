/*
 * wasi_compat.h: what SQLite's unix VFS needs and WASI preview 1 lacks.
 *
 * Force-included (-include) when SQLite is compiled for wasm32-wasi.
 * - File locks: WASI has none. fcntl is renamed to wsgi_wasm_sqlite_fcntl.
 *   The interpreter's link (guest/wsgi_fcntl.c) defines it over the host's
 *   file_lock; the weak fallback in wasi_compat.c grants every lock.
 * - Ownership and modes: fchown, fchmod and geteuid are no-ops (one user).
 */
#ifndef WSGI_WASM_SQLITE_WASI_COMPAT_H
#define WSGI_WASM_SQLITE_WASI_COMPAT_H
#include <fcntl.h>
#include <sys/types.h>
#define F_GETLK 5
#define F_SETLK 6
#define F_SETLKW 7
#define F_RDLCK 0
#define F_WRLCK 1
#define F_UNLCK 2
int wsgi_wasm_sqlite_fcntl(int fd, int cmd, ...);
#define fcntl wsgi_wasm_sqlite_fcntl
int fchmod(int fd, mode_t mode);
int fchown(int fd, uid_t owner, gid_t group);
uid_t geteuid(void);
#endif
