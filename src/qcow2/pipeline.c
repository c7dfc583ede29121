/* SPDX-License-Identifier: Apache-2.0 */
/* pipeline.c: clusters compressed on worker threads, written in guest order. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/debug.h"
#include "common/error.h"
#include "internal.h"

/* A slot goes FREE -> QUEUED -> BUSY -> DONE | FAILED -> FREE.  Zero
 * ranges go straight to DONE: they wait only for their turn. */
enum slot_state {
  SLOT_FREE,
  SLOT_QUEUED, /* waits for a worker */
  SLOT_BUSY,   /* a worker compresses it */
  SLOT_DONE,   /* ready to be written */
  SLOT_FAILED, /* the worker failed: error holds why */
};

enum slot_kind {
  SLOT_DATA,
  SLOT_ZERO,
};

struct slot {
  enum slot_state state;
  enum slot_kind kind;
  uint64_t offset;
  uint64_t len;       /* guest bytes: one cluster or less (data), any (zero) */
  unsigned char *in;  /* the cluster, padded with zeros */
  unsigned char *out; /* its compressed form */
  ssize_t clen;       /* bytes in out; 0: store the cluster raw */
  char *error;
  int errnum;
};

struct worker {
  struct qcow2_pipeline *p;
  struct qcow2_compressor *c;
  pthread_t thread;
  bool started;
};

struct qcow2_pipeline {
  struct qcow2_writer *w;
  size_t cs;
  bool compress;

  /* A ring: the slots in use are count slots from head, in guest order.
   * Only the producer changes head and count, under the lock. */
  struct slot *slots;
  unsigned nslots;
  unsigned head;   /* the oldest slot in use: the next to be written */
  unsigned count;  /* slots in use */
  unsigned queued; /* QUEUED slots among them */

  struct worker *workers;
  unsigned nworkers;
  pthread_mutex_t lock;
  pthread_cond_t work; /* workers wait for a queued slot */
  pthread_cond_t done; /* the producer waits for the head slot */
  bool stopping;

  bool failed;
  char *error; /* why, for every later call */
  int errnum;

  /* The rate limit: written bytes may not run ahead of next_ns. */
  uint64_t rate;      /* bytes per second; 0: none */
  uint64_t throttled; /* bytes the rate limit has counted */
  uint64_t next_ns;
};

static uint64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* ---- Workers ---- */

static void
compress_slot (struct worker *wk, struct slot *s)
{
  size_t cs = wk->p->cs;

  s->clen = qcow2_compressor_compress (wk->c, s->in, s->out, cs);
  if (s->clen == -1) {
    s->errnum = get_errno ();
    s->error = strdup (get_error ());
    error_clear (); /* the thread's own copy would leak at its exit */
  }
}

static void *
worker_main (void *arg)
{
  struct worker *wk = arg;
  struct qcow2_pipeline *p = wk->p;

  pthread_mutex_lock (&p->lock);
  for (;;) {
    struct slot *s;

    unsigned i;

    while (!p->stopping && p->queued == 0)
      pthread_cond_wait (&p->work, &p->lock);
    if (p->stopping)
      break;
    /* The oldest queued cluster: the writer waits for it first. */
    for (i = 0; p->slots[(p->head + i) % p->nslots].state != SLOT_QUEUED; i++)
      ;
    s = &p->slots[(p->head + i) % p->nslots];
    p->queued--;
    s->state = SLOT_BUSY;
    pthread_mutex_unlock (&p->lock);

    compress_slot (wk, s);

    pthread_mutex_lock (&p->lock);
    s->state = s->clen == -1 ? SLOT_FAILED : SLOT_DONE;
    /* Only the producer waits, and only for the head slot: a wake-up
     * for any other would find it still waiting (on a loaded host each
     * one costs a trip through the scheduler). */
    if (s == &p->slots[p->head])
      pthread_cond_signal (&p->done);
  }
  pthread_mutex_unlock (&p->lock);
  /* Errors went to the slots: this thread's copy would leak with it. */
  error_clear ();
  return NULL;
}

/* ---- Creating and freeing ---- */

static unsigned
online_cpus (void)
{
  long n = sysconf (_SC_NPROCESSORS_ONLN);

  return n < 1                                   ? 1
         : n > (long) QCOW2_PIPELINE_MAX_THREADS ? QCOW2_PIPELINE_MAX_THREADS
                                                 : (unsigned) n;
}

static int
check_options (const struct qcow2_pipeline_options *o)
{
  if (o->threads > QCOW2_PIPELINE_MAX_THREADS) {
    set_error (EINVAL, "%u compression threads: at most %u", o->threads,
               QCOW2_PIPELINE_MAX_THREADS);
    return -1;
  }
  if (o->slots > QCOW2_PIPELINE_MAX_SLOTS) {
    set_error (EINVAL, "%u clusters in flight: at most %u", o->slots,
               QCOW2_PIPELINE_MAX_SLOTS);
    return -1;
  }
  return 0;
}

/* Threads and slots as the options ask, within the bounds. */
static void
size_pool (struct qcow2_pipeline *p, const struct qcow2_pipeline_options *o)
{
  unsigned threads = o->threads ? o->threads : online_cpus ();
  unsigned slots = o->slots;

  if (slots == 0) {
    size_t by_memory = QCOW2_PIPELINE_DEFAULT_MEMORY / p->cs;

    slots = 8 * threads < 32 ? 32 : 8 * threads;
    if (slots > by_memory)
      slots = by_memory < 8 ? 8 : (unsigned) by_memory;
  }
  if (threads > slots)
    threads = slots;
  p->nworkers = threads;
  p->nslots = slots;
}

static int
alloc_slots (struct qcow2_pipeline *p)
{
  unsigned i;

  p->slots = calloc (p->nslots, sizeof *p->slots);
  if (p->slots == NULL)
    goto nomem;
  for (i = 0; i < p->nslots; i++) {
    p->slots[i].in = malloc (p->cs);
    p->slots[i].out = malloc (p->cs);
    if (p->slots[i].in == NULL || p->slots[i].out == NULL)
      goto nomem;
  }
  return 0;
nomem:
  set_error (ENOMEM, "allocating %u compression buffers of %zu bytes",
             2 * p->nslots, p->cs);
  return -1;
}

static int
start_workers (struct qcow2_pipeline *p, const struct qcow2_pipeline_options *o)
{
  enum qcow2_compression type = qcow2_writer_compression (p->w);
  unsigned i;
  int r;

  p->workers = calloc (p->nworkers, sizeof *p->workers);
  if (p->workers == NULL) {
    set_error (ENOMEM, "allocating compression threads");
    return -1;
  }
  for (i = 0; i < p->nworkers; i++) {
    struct worker *wk = &p->workers[i];

    wk->p = p;
    wk->c = qcow2_compressor_new (type, (uint32_t) p->cs, o->level);
    if (wk->c == NULL)
      return -1;
  }
  for (i = 0; i < p->nworkers; i++) {
    struct worker *wk = &p->workers[i];

    r = pthread_create (&wk->thread, NULL, worker_main, wk);
    if (r != 0) {
      set_error (r, "starting compression thread %u", i + 1);
      return -1;
    }
    wk->started = true;
  }
  return 0;
}

struct qcow2_pipeline *
qcow2_pipeline_new (struct qcow2_writer *w,
                    const struct qcow2_pipeline_options *o)
{
  struct qcow2_pipeline *p;

  if (check_options (o) == -1)
    return NULL;
  p = calloc (1, sizeof *p);
  if (p == NULL) {
    set_error (ENOMEM, "allocating the compression pipeline");
    return NULL;
  }
  p->w = w;
  p->cs = qcow2_writer_cluster_size (w);
  p->compress = o->compress;
  p->rate = o->rate_limit >= 1 ? (uint64_t) o->rate_limit << 20 : 0;
  pthread_mutex_init (&p->lock, NULL);
  pthread_cond_init (&p->work, NULL);
  pthread_cond_init (&p->done, NULL);
  if (p->compress) {
    size_pool (p, o);
    if (alloc_slots (p) == -1 || start_workers (p, o) == -1) {
      qcow2_pipeline_free (p);
      return NULL;
    }
  }
  debug (DEBUG_QCOW2,
         "pipeline: %s, %u threads, %u slots of %zu bytes, rate limit %" PRIu64
         " bytes/s",
         p->compress ? qcow2_compression_name (qcow2_writer_compression (w))
                     : "no compression",
         p->nworkers, p->nslots, p->cs, p->rate);
  return p;
}

void
qcow2_pipeline_free (struct qcow2_pipeline *p)
{
  unsigned i;

  if (p == NULL)
    return;
  pthread_mutex_lock (&p->lock);
  p->stopping = true;
  pthread_cond_broadcast (&p->work);
  pthread_mutex_unlock (&p->lock);
  for (i = 0; p->workers && i < p->nworkers; i++) {
    if (p->workers[i].started)
      pthread_join (p->workers[i].thread, NULL);
    qcow2_compressor_free (p->workers[i].c);
  }
  free (p->workers);
  for (i = 0; p->slots && i < p->nslots; i++) {
    free (p->slots[i].in);
    free (p->slots[i].out);
    free (p->slots[i].error);
  }
  free (p->slots);
  pthread_cond_destroy (&p->done);
  pthread_cond_destroy (&p->work);
  pthread_mutex_destroy (&p->lock);
  free (p->error);
  free (p);
}

unsigned
qcow2_pipeline_threads (const struct qcow2_pipeline *p)
{
  return p->compress ? p->nworkers : 0;
}

uint64_t
qcow2_pipeline_throttled_bytes (const struct qcow2_pipeline *p)
{
  return p->throttled;
}

/* ---- Failing ---- */

/* Remember the error just set, so that every later call repeats it. */
static int
pipeline_break (struct qcow2_pipeline *p)
{
  if (!p->failed) {
    p->failed = true;
    p->errnum = get_errno ();
    p->error = strdup (get_error ());
  }
  return -1;
}

static int
check_usable (struct qcow2_pipeline *p)
{
  if (!p->failed)
    return 0;
  /* p->error has the system's text already. */
  if (p->error != NULL)
    set_error (-p->errnum, "%s", p->error);
  else
    set_error (p->errnum, "the pipeline failed earlier");
  return -1;
}

/* ---- Writing, in order ---- */

/* Sleep as long as the rate limit asks after len more bytes. */
static void
throttle (struct qcow2_pipeline *p, uint64_t len)
{
  uint64_t now, wait;

  if (p->rate == 0 || len == 0)
    return;
  p->throttled += len;
  now = now_ns ();
  if (p->next_ns < now)
    p->next_ns = now;
  p->next_ns += len * 1000000000u / p->rate;
  wait = p->next_ns - now;
  /* Short waits add up: sleep once they are worth a system call. */
  if (wait >= 10000000u) {
    struct timespec ts = {
      .tv_sec = (time_t) (wait / 1000000000u),
      .tv_nsec = (long) (wait % 1000000000u),
    };

    while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
      ;
  }
}

static int
write_raw (struct qcow2_pipeline *p, uint64_t offset, const void *buf,
           size_t len)
{
  if (qcow2_writer_write (p->w, offset, buf, len) == -1)
    return -1;
  throttle (p, len);
  return 0;
}

/* Write the head slot (DONE or FAILED) and free it. */
static int
write_head (struct qcow2_pipeline *p, struct slot *s, enum slot_state state)
{
  int r = 0;

  if (state == SLOT_FAILED) {
    set_error (s->errnum,
               "compressing the cluster at guest offset %" PRIu64 ": %s",
               s->offset, s->error ? s->error : "failed");
    return -1;
  }
  switch (s->kind) {
  case SLOT_ZERO:
    r = qcow2_writer_zero (p->w, s->offset, s->len);
    break;
  case SLOT_DATA:
    if (s->clen > 0) {
      r = qcow2_writer_write_compressed (p->w, s->offset, s->out,
                                         (size_t) s->clen);
      if (r == 0)
        throttle (p, (uint64_t) s->clen);
    }
    else
      r = write_raw (p, s->offset, s->in, s->len);
    break;
  }
  if (r == -1)
    return -1;
  pthread_mutex_lock (&p->lock);
  s->state = SLOT_FREE;
  p->head = (p->head + 1) % p->nslots;
  p->count--;
  pthread_mutex_unlock (&p->lock);
  return 0;
}

/* Wake the workers for the clusters queued since they last looked.
 * Publishing does not: the producer queues a call's clusters, then wakes
 * the workers once (here, at the end of the call or before it waits),
 * not once per cluster.  Under the lock. */
static void
wake_workers (struct qcow2_pipeline *p)
{
  if (p->queued > 0)
    pthread_cond_broadcast (&p->work);
}

/* Write the finished slots at the head.  Wait for unfinished ones while
 * more than keep slots are in use (keep = nslots / 2: make room;
 * 0: write everything). */
static int
drain (struct qcow2_pipeline *p, unsigned keep)
{
  while (p->count > 0) {
    struct slot *s = &p->slots[p->head];
    enum slot_state state;

    pthread_mutex_lock (&p->lock);
    if (p->count > keep && (s->state == SLOT_QUEUED || s->state == SLOT_BUSY))
      wake_workers (p);
    while (p->count > keep
           && (s->state == SLOT_QUEUED || s->state == SLOT_BUSY))
      pthread_cond_wait (&p->done, &p->lock);
    state = s->state;
    pthread_mutex_unlock (&p->lock);
    if (state != SLOT_DONE && state != SLOT_FAILED)
      return 0;
    if (write_head (p, s, state) == -1)
      return pipeline_break (p);
  }
  return 0;
}

/* The next free slot (after making room), for the producer to fill and
 * then publish.  A full ring is drained to half: the producer then
 * sleeps once per half ring while the workers compress the other half,
 * not once per cluster. */
static struct slot *
take_slot (struct qcow2_pipeline *p)
{
  if (p->count == p->nslots && drain (p, p->nslots / 2) == -1)
    return NULL;
  return &p->slots[(p->head + p->count) % p->nslots];
}

/* Put the filled slot s in the ring: QUEUED for a worker (woken later:
 * wake_workers), or DONE. */
static void
publish (struct qcow2_pipeline *p, struct slot *s, enum slot_state state)
{
  pthread_mutex_lock (&p->lock);
  s->state = state;
  p->count++;
  if (state == SLOT_QUEUED)
    p->queued++;
  pthread_mutex_unlock (&p->lock);
}

static int
submit_cluster (struct qcow2_pipeline *p, uint64_t offset,
                const unsigned char *buf, size_t len)
{
  struct slot *s = take_slot (p);

  if (s == NULL)
    return -1;
  s->kind = SLOT_DATA;
  s->offset = offset;
  s->len = len;
  s->clen = 0;
  memcpy (s->in, buf, len);
  if (len < p->cs)
    memset (s->in + len, 0, p->cs - len);
  publish (p, s, SLOT_QUEUED);
  return 0;
}

/* Queue the clusters of one range (the workers are woken by the caller,
 * or before the producer waits). */
static int
submit_range (struct qcow2_pipeline *p, uint64_t guest_offset,
              const unsigned char *b, size_t len)
{
  size_t done = 0;

  if (guest_offset % p->cs != 0 || len == 0) {
    set_error (EINVAL,
               "range of %zu bytes at guest offset %" PRIu64
               " is not whole clusters",
               len, guest_offset);
    return pipeline_break (p);
  }
  while (done < len) {
    size_t n = len - done < p->cs ? len - done : p->cs;

    if (submit_cluster (p, guest_offset + done, b + done, n) == -1)
      return -1;
    done += n;
    /* Keep the writer busy with whatever is ready. */
    if (drain (p, p->nslots) == -1)
      return -1;
  }
  return 0;
}

/* The workers, once for the clusters a call queued. */
static int
wake_after (struct qcow2_pipeline *p, int r)
{
  pthread_mutex_lock (&p->lock);
  wake_workers (p);
  pthread_mutex_unlock (&p->lock);
  return r;
}

int
qcow2_pipeline_write (struct qcow2_pipeline *p, uint64_t guest_offset,
                      const void *buf, size_t len)
{
  if (check_usable (p) == -1)
    return -1;
  if (!p->compress)
    return write_raw (p, guest_offset, buf, len) == -1 ? pipeline_break (p) : 0;
  return wake_after (p, submit_range (p, guest_offset, buf, len));
}

int
qcow2_pipeline_writev (struct qcow2_pipeline *p, uint64_t guest_offset,
                       const struct iovec *iov, int n)
{
  uint64_t len = 0;

  if (check_usable (p) == -1)
    return -1;
  if (!p->compress) {
    if (qcow2_writer_writev (p->w, guest_offset, iov, n) == -1)
      return pipeline_break (p);
    for (int i = 0; i < n; i++)
      len += iov[i].iov_len;
    throttle (p, len);
    return 0;
  }
  for (int i = 0; i < n; i++) {
    if (submit_range (p, guest_offset, iov[i].iov_base, iov[i].iov_len) == -1)
      return wake_after (p, -1);
    guest_offset += iov[i].iov_len;
  }
  return wake_after (p, 0);
}

int
qcow2_pipeline_zero (struct qcow2_pipeline *p, uint64_t guest_offset,
                     uint64_t len)
{
  struct slot *s;

  if (check_usable (p) == -1)
    return -1;
  if (!p->compress || p->count == 0) {
    if (qcow2_writer_zero (p->w, guest_offset, len) == -1)
      return pipeline_break (p);
    return 0;
  }
  s = take_slot (p);
  if (s == NULL)
    return -1;
  s->kind = SLOT_ZERO;
  s->offset = guest_offset;
  s->len = len;
  publish (p, s, SLOT_DONE);
  return drain (p, p->nslots);
}

uint64_t
qcow2_pipeline_ticket (struct qcow2_pipeline *p)
{
  return qcow2_writer_ticket (p->w);
}

int
qcow2_pipeline_wait (struct qcow2_pipeline *p, uint64_t ticket, bool block)
{
  int r = qcow2_writer_wait (p->w, ticket, block);

  return r == -1 ? pipeline_break (p) : r;
}

int
qcow2_pipeline_flush (struct qcow2_pipeline *p)
{
  if (check_usable (p) == -1)
    return -1;
  if (!p->compress)
    return 0;
  return drain (p, 0);
}
