/* error.h: the per-thread "last error" that every failing function records. */
#ifndef KNIB_COMMON_ERROR_H
#define KNIB_COMMON_ERROR_H

#include <stdarg.h>

/* Record "message[: strerror(errnum)]" as this thread's last error and set
 * errno to errnum.  errnum 0 means no system error text is appended. */
void set_error (int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Prepend "context: " to the last error, keeping its errno. */
void error_prepend (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

/* Change the errno recorded with the last error (and errno itself),
 * keeping its text: for a failure that is not a system error but still
 * needs a code callers can test (EREMOTEIO for a refusal by QEMU). */
void error_set_errno (int errnum);

/* The last error message (never NULL) and its errno. */
const char *get_error (void);
int get_errno (void);

/* Forget the last error. */
void error_clear (void);

#endif
