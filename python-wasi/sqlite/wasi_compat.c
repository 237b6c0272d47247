/*
 * wasi_compat.c: the functions declared in wasi_compat.h. The fcntl here is
 * weak: the interpreter links a strong one that locks through the host
 * (guest/wsgi_fcntl.c). This fallback, for other links of libsqlite3.a,
 * grants every lock and F_GETLK reports none; every other fcntl command
 * goes to wasi-libc.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/types.h>

#define F_GETLK 5
#define F_SETLK 6
#define F_SETLKW 7
#define F_UNLCK 2

__attribute__((weak)) int wsgi_wasm_sqlite_fcntl(int fd, int cmd, ...) {
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	switch (cmd) {
	case F_GETLK:
		((struct flock *)arg)->l_type = F_UNLCK;
		return 0;
	case F_SETLK:
	case F_SETLKW:
		return 0;
	default:
		return fcntl(fd, cmd, (int)(long)arg);
	}
}

int fchmod(int fd, mode_t mode) { (void)fd; (void)mode; return 0; }
int fchown(int fd, uid_t owner, gid_t group) { (void)fd; (void)owner; (void)group; return 0; }
uid_t geteuid(void) { return 0; }
