/* SPDX-License-Identifier: Apache-2.0 */
/* error.c: per-thread last-error storage with context prefixes. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static __thread char *last_msg;
static __thread int last_errno;

/* A thread that ends with an error set (a worker that handed it on, a
 * watcher that printed it) must not take the message with it: a key
 * whose destructor frees it when the thread exits. */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static __thread bool exit_armed;
static bool exit_key_ok;

static void
free_at_thread_exit (void *unused)
{
  free (last_msg);
  last_msg = NULL;
}

static void
make_exit_key (void)
{
  exit_key_ok = pthread_key_create (&exit_key, free_at_thread_exit) == 0;
}

static void
arm_thread_exit (void)
{
  if (exit_armed)
    return;
  pthread_once (&exit_once, make_exit_key);
  /* Any non-NULL value: the destructor runs only for those. */
  if (exit_key_ok && pthread_setspecific (exit_key, &exit_armed) == 0)
    exit_armed = true;
}

static void
store (char *msg, int errnum)
{
  if (msg != NULL)
    arm_thread_exit ();
  free (last_msg);
  last_msg = msg;
  last_errno = errnum;
  errno = errnum;
}

void
set_error (int errnum, const char *fmt, ...)
{
  va_list ap;
  char *base = NULL, *msg = NULL;
  int code = errnum < 0 ? -errnum : errnum;

  va_start (ap, fmt);
  if (vasprintf (&base, fmt, ap) == -1)
    base = NULL;
  va_end (ap);

  if (base == NULL) {
    store (NULL, code ? code : ENOMEM);
    return;
  }
  if (errnum <= 0) {
    store (base, code);
    return;
  }
  if (asprintf (&msg, "%s: %s", base, strerror (errnum)) == -1)
    msg = NULL;
  if (msg == NULL) {
    store (base, errnum);
    return;
  }
  free (base);
  store (msg, errnum);
}

void
error_prepend (const char *fmt, ...)
{
  va_list ap;
  char *ctx = NULL, *msg = NULL;
  int saved = last_errno;

  va_start (ap, fmt);
  if (vasprintf (&ctx, fmt, ap) == -1)
    ctx = NULL;
  va_end (ap);
  if (ctx == NULL) {
    errno = saved;
    return;
  }
  if (asprintf (&msg, "%s: %s", ctx, get_error ()) == -1)
    msg = NULL;
  free (ctx);
  if (msg != NULL)
    store (msg, saved);
  errno = saved;
}

void
error_save (struct error_saved *s)
{
  s->msg = last_msg;
  s->errnum = last_errno;
  last_msg = NULL;
  last_errno = 0;
}

void
error_restore (struct error_saved *s)
{
  store (s->msg, s->errnum);
  s->msg = NULL;
  s->errnum = 0;
}

const char *
get_error (void)
{
  if (last_msg == NULL)
    return last_errno == ENOMEM ? "out of memory" : "unknown error";
  return last_msg;
}

int
get_errno (void)
{
  return last_errno;
}

void
error_clear (void)
{
  store (NULL, 0);
}
