/* SPDX-License-Identifier: Apache-2.0 */
/* util.h: small helpers: name validation, strict number parsing, clocks. */
#ifndef KNIB_COMMON_UTIL_H
#define KNIB_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A VM, disk or backup name is safe to use as one path component:
 * 1 to 128 characters of [A-Za-z0-9._+:@-], not starting with '.' or '-'. */
bool name_is_valid (const char *name);

/* As name_is_valid, but records "invalid WHAT name 'NAME': why" on failure. */
int name_check (const char *what, const char *name)
  __attribute__ ((warn_unused_result));

/* Parse a whole string (no blanks around it) as a number in [min, max];
 * -1 with set_error naming WHAT otherwise. */
int parse_int64 (const char *what, const char *s, int64_t min, int64_t max,
                 int64_t *out) __attribute__ ((warn_unused_result));
int parse_double (const char *what, const char *s, double min, double max,
                  double *out) __attribute__ ((warn_unused_result));

/* Connect a stream socket to the unix socket at path.  Returns the fd
 * (close-on-exec), or -1 with set_error "WHAT: cannot connect to 'PATH':
 * ...". */
int unix_connect (const char *what, const char *path)
  __attribute__ ((warn_unused_result));

/* Write all len bytes of buf to fd, retrying short writes and EINTR.
 * Returns 0, or -1 with errno set (no set_error: callers name the file). */
int write_all (int fd, const void *buf, size_t len)
  __attribute__ ((warn_unused_result));

/* asprintf that records ENOMEM with set_error. */
char *str_printf (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2), warn_unused_result));

/* Process pid exists and has not exited: a zombie that its parent (or
 * an init that is slow to reap) has not collected yet counts as gone,
 * as does a process that kill (pid, 0) says is not there. */
bool process_alive (pid_t pid);

/* When process pid started, in clock ticks after boot (field 22 of
 * /proc/PID/stat): with the pid, it names one process for good.  -1
 * when it is gone (or a zombie) or /proc cannot say. */
int64_t process_start_time (pid_t pid);

/* Monotonic clock in milliseconds, and in seconds. */
int64_t monotonic_ms (void);
double monotonic_seconds (void);

/* Milliseconds left until deadline (a monotonic_ms value), clamped to
 * [0, INT_MAX]; a deadline of -1 means "no deadline" and gives -1. */
int deadline_remaining_ms (int64_t deadline);

/* Deadline timeout_ms from now, or -1 when timeout_ms < 0. */
int64_t deadline_after_ms (int64_t timeout_ms);

/* The environment variable knibd sets for its jobs: the file in which
 * knib's progress bars write their figures, one JSON line rewritten in
 * place: {"label": DISK, "done": BYTES, "total": BYTES}. */
#define PROGRESS_FILE_ENV "KNIB_PROGRESS_FILE"

#endif
