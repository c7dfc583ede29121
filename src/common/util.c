/* SPDX-License-Identifier: Apache-2.0 */
/* util.c: name validation, strict number parsing and monotonic time. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <time.h>

#include "error.h"
#include "util.h"

#define NAME_MAX_LEN 128

static const char *
name_problem (const char *name)
{
  size_t n = strlen (name);

  if (n == 0)
    return "it is empty";
  if (n > NAME_MAX_LEN)
    return "it is longer than 128 characters";
  if (name[0] == '.' || name[0] == '-')
    return "it may not start with '.' or '-'";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
          || (c >= '0' && c <= '9') || strchr ("._+:@-", c) != NULL))
      return "only letters, digits and ._+:@- are allowed";
  }
  return NULL;
}

bool
name_is_valid (const char *name)
{
  return name != NULL && name_problem (name) == NULL;
}

int
name_check (const char *what, const char *name)
{
  const char *why;

  if (name == NULL) {
    set_error (EINVAL, "no %s name given", what);
    return -1;
  }
  why = name_problem (name);
  if (why != NULL) {
    set_error (-EINVAL, "invalid %s name '%s': %s", what, name, why);
    return -1;
  }
  return 0;
}

int
parse_int64 (const char *what, const char *s, int64_t min, int64_t max,
             int64_t *out)
{
  char *end;
  long long v;

  errno = 0;
  v = strtoll (s, &end, 10);
  if (s[0] == '\0' || isspace ((unsigned char) s[0]) || *end != '\0'
      || errno == ERANGE) {
    set_error (0, "%s: '%s' is not a whole number", what, s);
    return -1;
  }
  if (v < min || v > max) {
    set_error (0, "%s: %lld is out of range (%lld to %lld)", what, v,
               (long long) min, (long long) max);
    return -1;
  }
  *out = v;
  return 0;
}

int
parse_double (const char *what, const char *s, double min, double max,
              double *out)
{
  char *end;
  double v;

  errno = 0;
  v = strtod (s, &end);
  if (s[0] == '\0' || isspace ((unsigned char) s[0]) || *end != '\0'
      || errno == ERANGE || !isfinite (v)) {
    set_error (0, "%s: '%s' is not a number", what, s);
    return -1;
  }
  if (v < min || v > max) {
    set_error (0, "%s: %g is out of range (%g to %g)", what, v, min, max);
    return -1;
  }
  *out = v;
  return 0;
}

int
unix_connect (const char *what, const char *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int fd;

  if (strlen (path) >= sizeof addr.sun_path) {
    set_error (ENAMETOOLONG, "%s: socket path '%s' is longer than %zu bytes",
               what, path, sizeof addr.sun_path - 1);
    return -1;
  }
  strcpy (addr.sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    set_error (errno, "%s: socket", what);
    return -1;
  }
  if (connect (fd, (struct sockaddr *) &addr, sizeof addr) == -1) {
    set_error (errno, "%s: cannot connect to '%s'", what, path);
    close (fd);
    return -1;
  }
  return fd;
}

int
write_all (int fd, const void *buf, size_t len)
{
  const char *p = buf;

  while (len > 0) {
    ssize_t n = write (fd, p, len);

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1)
      return -1;
    p += n;
    len -= n;
  }
  return 0;
}

double
monotonic_seconds (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int64_t
monotonic_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
deadline_after_ms (int64_t timeout_ms)
{
  int64_t now;

  if (timeout_ms < 0)
    return -1;
  now = monotonic_ms ();
  if (timeout_ms > INT64_MAX - now)
    return INT64_MAX;
  return now + timeout_ms;
}

int
deadline_remaining_ms (int64_t deadline)
{
  int64_t left;

  if (deadline < 0)
    return -1;
  left = deadline - monotonic_ms ();
  if (left < 0)
    return 0;
  if (left > INT_MAX)
    return INT_MAX;
  return (int) left;
}

char *
str_printf (const char *fmt, ...)
{
  va_list ap;
  char *s;
  int r;

  va_start (ap, fmt);
  r = vasprintf (&s, fmt, ap);
  va_end (ap);
  if (r == -1) {
    set_error (ENOMEM, "asprintf");
    return NULL;
  }
  return s;
}

/* The fields of /proc/PID/stat after "PID (COMM)" (COMM may hold
 * anything, ')' included), in buf; NULL when it cannot be read. */
static const char *
proc_stat_fields (pid_t pid, char *buf, size_t size)
{
  char path[64];
  FILE *fp;
  size_t n;
  const char *p;

  snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
  fp = fopen (path, "re");
  if (fp == NULL)
    return NULL;
  n = fread (buf, 1, size - 1, fp);
  fclose (fp);
  buf[n] = '\0';
  p = strrchr (buf, ')');
  return p != NULL && p[1] == ' ' ? p + 2 : NULL;
}

static bool
state_gone (const char *fields)
{
  return fields[0] == 'Z' || fields[0] == 'X';
}

bool
process_alive (pid_t pid)
{
  char buf[1024];
  const char *f;

  if (pid <= 0 || (kill (pid, 0) == -1 && errno == ESRCH))
    return false;
  f = proc_stat_fields (pid, buf, sizeof buf);
  return f == NULL || !state_gone (f); /* no /proc: trust kill */
}

int64_t
process_start_time (pid_t pid)
{
  char buf[1024];
  const char *f = pid > 0 ? proc_stat_fields (pid, buf, sizeof buf) : NULL;
  char *end;
  long long start;

  if (f == NULL || state_gone (f))
    return -1;
  /* f is field 3 (the state); the start time is field 22. */
  for (int field = 3; field < 22; field++) {
    f = strchr (f, ' ');
    if (f == NULL)
      return -1;
    f++;
  }
  start = strtoll (f, &end, 10);
  return end == f ? -1 : (int64_t) start;
}
