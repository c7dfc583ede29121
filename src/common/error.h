/* SPDX-License-Identifier: Apache-2.0 */
/* error.h: the per-thread "last error" that every failing function records. */
#ifndef KNIB_COMMON_ERROR_H
#define KNIB_COMMON_ERROR_H

#include <stdarg.h>

/* Record the formatted message as this thread's last error, with an
 * error code that callers can test (get_errno, and errno on return):
 *   errnum > 0  a system error: "message: strerror(errnum)";
 *   errnum < 0  the code -errnum without the system's text, for failures
 *               that are not system calls but still need a code
 *               (set_error (-EINVAL, "invalid vm name 'x': ..."));
 *   errnum 0    no code.
 * This is the one way to carry an error code: never set errno after it. */
void set_error (int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Prepend "context: " to the last error, keeping its code. */
void error_prepend (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

/* The last error message (never NULL) and its code. */
const char *get_error (void);
int get_errno (void);

/* Forget the last error. */
void error_clear (void);

/* The error being reported, set aside while release or teardown code
 * runs (which may record errors of its own), then put back.  Neither
 * allocates, so the message cannot be lost on the way. */
struct error_saved {
  char *msg;
  int errnum;
};

/* Move the last error into *s (the thread's last error is then empty). */
void error_save (struct error_saved *s);

/* Make *s the last error again (dropping whatever was recorded since),
 * and set errno to its code.  *s is empty afterwards. */
void error_restore (struct error_saved *s);

#endif
