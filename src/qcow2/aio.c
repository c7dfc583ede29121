/* SPDX-License-Identifier: Apache-2.0 */
/* aio.c: O_DIRECT writes of the image kept in flight on a few writer threads. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "internal.h"

struct aio_write {
  struct iovec iov[QCOW2_MAX_IOV];
  int n;
  uint64_t len, offset;
  uint64_t seq; /* 0: the slot is free */
  bool started; /* a thread writes it */
  bool fail;    /* test hook: fails with EIO instead */
};

struct qcow2_aio {
  int fd;
  unsigned depth;
  pthread_mutex_t lock;
  pthread_cond_t work; /* to the threads: a write is queued, or quit */
  pthread_cond_t done; /* to the submitter: a write completed */
  struct aio_write w[QCOW2_AIO_MAX_DEPTH];
  unsigned busy;      /* slots taken */
  unsigned running;   /* writes being written */
  uint64_t submitted; /* seq of the last write submitted */
  bool quit;
  bool failed;
  struct error_saved err; /* the first failed write's error */
  pthread_t threads[QCOW2_AIO_MAX_DEPTH];
  unsigned nthreads;
  uint64_t fail_at; /* test hook: the write of this seq fails */
  bool hold;        /* test hook: writes start when depth are queued */
  struct qcow2_aio_stats stats;
};

/* The queued write that came first, or NULL.  Under the lock. */
static struct aio_write *
next_write (struct qcow2_aio *a)
{
  struct aio_write *best = NULL;

  for (unsigned i = 0; i < a->depth; i++)
    if (a->w[i].seq != 0 && !a->w[i].started
        && (best == NULL || a->w[i].seq < best->seq))
      best = &a->w[i];
  return best;
}

/* Tests see every slot in use: a write starts once all are queued, or
 * after a while (the submitter may wait for it).  0: look again, 1:
 * start it.  Under the lock. */
static int
hold_write (struct qcow2_aio *a)
{
  struct timespec ts;

  clock_gettime (CLOCK_REALTIME, &ts);
  ts.tv_nsec += 200 * 1000 * 1000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  return pthread_cond_timedwait (&a->work, &a->lock, &ts) == ETIMEDOUT;
}

static int
do_write (struct qcow2_aio *a, const struct aio_write *w)
{
  if (w->fail) {
    set_error (EIO, "write at file offset %" PRIu64 " (test hook)", w->offset);
    return -1;
  }
  return qcow2_pwritev_all (a->fd, w->iov, w->n, w->len, w->offset);
}

static void *
aio_thread (void *arg)
{
  struct qcow2_aio *a = arg;
  struct aio_write *w;

  pthread_mutex_lock (&a->lock);
  for (;;) {
    w = next_write (a);
    if (w != NULL && a->hold && a->busy < a->depth && !a->quit) {
      if (hold_write (a) == 0)
        continue;
      w = next_write (a); /* the lock was let go */
    }
    if (w == NULL) {
      /* Queued writes are written even when quitting: their buffers
       * are in use until then. */
      if (a->quit && next_write (a) == NULL)
        break;
      pthread_cond_wait (&a->work, &a->lock);
      continue;
    }
    w->started = true;
    if (++a->running > a->stats.max_in_flight)
      a->stats.max_in_flight = a->running;
    pthread_mutex_unlock (&a->lock);
    if (do_write (a, w) == -1) {
      struct error_saved err;

      error_save (&err);
      pthread_mutex_lock (&a->lock);
      if (!a->failed) {
        a->failed = true;
        a->err = err;
      }
      else
        free (err.msg);
    }
    else
      pthread_mutex_lock (&a->lock);
    w->seq = 0;
    w->started = false;
    a->busy--;
    a->running--;
    pthread_cond_broadcast (&a->done);
  }
  pthread_mutex_unlock (&a->lock);
  return NULL;
}

struct qcow2_aio *
qcow2_aio_new (int fd, unsigned depth)
{
  struct qcow2_aio *a;
  const char *hook;
  int e;

  if (depth < 1 || depth > QCOW2_AIO_MAX_DEPTH) {
    set_error (-EINVAL, "%u writes in flight: 1 to %u can be", depth,
               QCOW2_AIO_MAX_DEPTH);
    return NULL;
  }
  a = calloc (1, sizeof *a);
  if (a == NULL) {
    set_error (ENOMEM, "allocating the image's writes in flight");
    return NULL;
  }
  a->fd = fd;
  a->depth = depth;
  pthread_mutex_init (&a->lock, NULL);
  pthread_cond_init (&a->work, NULL);
  pthread_cond_init (&a->done, NULL);
#ifdef ENABLE_TEST_HOOKS
  hook = getenv ("KNIB_TEST_FAIL_WRITE");
  if (hook != NULL)
    a->fail_at = strtoull (hook, NULL, 10);
  a->hold = getenv ("KNIB_TEST_HOLD_WRITES") != NULL;
#else
  (void) hook;
#endif
  for (unsigned i = 0; i < depth; i++) {
    e = pthread_create (&a->threads[i], NULL, aio_thread, a);
    if (e != 0) {
      qcow2_aio_free (a);
      set_error (e, "starting the image's writer threads");
      return NULL;
    }
    a->nthreads++;
  }
  return a;
}

/* Wait until no write up to seq is in flight.  Under the lock. */
static void
wait_seq (struct qcow2_aio *a, uint64_t seq)
{
  for (;;) {
    bool pending = false;

    for (unsigned i = 0; i < a->depth && !pending; i++)
      pending = a->w[i].seq != 0 && a->w[i].seq <= seq;
    if (!pending)
      return;
    a->stats.waits++;
    pthread_cond_wait (&a->done, &a->lock);
  }
}

/* The first failed write's error, for this thread.  Under the lock. */
static int
report (struct qcow2_aio *a)
{
  struct error_saved copy = { .errnum = a->err.errnum };

  copy.msg = a->err.msg != NULL ? strdup (a->err.msg) : NULL;
  if (copy.msg == NULL)
    set_error (a->err.errnum, "a write of the image failed");
  else
    error_restore (&copy);
  return -1;
}

void
qcow2_aio_free (struct qcow2_aio *a)
{
  if (a == NULL)
    return;
  pthread_mutex_lock (&a->lock);
  a->quit = true;
  pthread_cond_broadcast (&a->work);
  pthread_mutex_unlock (&a->lock);
  for (unsigned i = 0; i < a->nthreads; i++)
    pthread_join (a->threads[i], NULL);
  free (a->err.msg);
  pthread_cond_destroy (&a->done);
  pthread_cond_destroy (&a->work);
  pthread_mutex_destroy (&a->lock);
  free (a);
}

int
qcow2_aio_submit (struct qcow2_aio *a, const struct iovec *iov, int n,
                  uint64_t len, uint64_t offset)
{
  struct aio_write *w = NULL;

  pthread_mutex_lock (&a->lock);
  while (a->busy == a->depth && !a->failed) {
    a->stats.waits++;
    pthread_cond_wait (&a->done, &a->lock);
  }
  if (a->failed) {
    report (a);
    pthread_mutex_unlock (&a->lock);
    return -1;
  }
  for (unsigned i = 0; w == NULL; i++)
    if (a->w[i].seq == 0)
      w = &a->w[i];
  memcpy (w->iov, iov, (size_t) n * sizeof *iov);
  w->n = n;
  w->len = len;
  w->offset = offset;
  w->seq = ++a->submitted;
  w->fail = w->seq == a->fail_at;
  a->busy++;
  a->stats.writes++;
  a->stats.bytes += len;
  if (a->hold)
    pthread_cond_broadcast (&a->work);
  else
    pthread_cond_signal (&a->work);
  pthread_mutex_unlock (&a->lock);
  return 0;
}

uint64_t
qcow2_aio_ticket (struct qcow2_aio *a)
{
  uint64_t t;

  pthread_mutex_lock (&a->lock);
  t = a->submitted;
  pthread_mutex_unlock (&a->lock);
  return t;
}

int
qcow2_aio_wait (struct qcow2_aio *a, uint64_t ticket, bool block)
{
  int r = 1;

  pthread_mutex_lock (&a->lock);
  if (block)
    wait_seq (a, ticket);
  else
    for (unsigned i = 0; i < a->depth && r == 1; i++)
      if (a->w[i].seq != 0 && a->w[i].seq <= ticket)
        r = 0;
  if (r == 1 && a->failed)
    r = report (a);
  pthread_mutex_unlock (&a->lock);
  return r;
}

void
qcow2_aio_get_stats (struct qcow2_aio *a, struct qcow2_aio_stats *stats)
{
  pthread_mutex_lock (&a->lock);
  *stats = a->stats;
  pthread_mutex_unlock (&a->lock);
}
