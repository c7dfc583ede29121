/* SPDX-License-Identifier: Apache-2.0 */
/* stream.c: a disk's copy on two threads: libnbd's reads here, the qcow2 writer on its own. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "backup/internal.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"

/* Chunks handed to the writer at once: one lock and one wake-up per
 * batch, not per chunk (a handoff per 256 KiB read cost ~26k futex calls
 * per 2 GiB), and one pwritev of up to 2 MiB for a run of them. */
#define STREAM_BATCH 8u

/* Read buffers beyond the reads in flight: two batches, the one the
 * writer writes and the one being filled. */
#define STREAM_SPARE (2 * STREAM_BATCH)

/* Batches queued for the writer, at most. */
#define STREAM_QUEUE 4u

/* Batches written whose writes may still be in flight (the image's
 * writes in flight, qcow2_writer_options.write_depth): their buffers go
 * back when the writes complete. */
#define STREAM_WRITTEN 4u

/* The image's clusters sit in the file in guest order in a full backup,
 * and the reads land in buffers aligned for O_DIRECT: the writer writes
 * them to the file as they are. */
#define STREAM_ALIGN 4096u

struct item {
  uint64_t offset;
  uint64_t length;
  enum nbd_range_kind kind;
  void *buf; /* DATA: the read buffer, owned by the stream */
};

struct batch {
  struct item items[STREAM_BATCH];
  unsigned n;
  uint64_t ticket; /* written: the writes its buffers wait for */
};

struct stream {
  struct qcow2_pipeline *p;
  nbd_chunk_fn fn; /* the caller's look at each chunk, on this thread */
  void *opaque;

  pthread_mutex_t lock;
  pthread_cond_t to_writer; /* a batch is queued, or the end */
  pthread_cond_t to_reader; /* a batch is written: buffers and room */
  struct batch queue[STREAM_QUEUE];
  unsigned head, count;
  void **spare; /* buffers given back */
  unsigned nspare;
  unsigned allocated, max_buffers;
  bool done;   /* no more batches come */
  bool stop;   /* give up: write nothing more */
  bool failed; /* the writer failed: errnum, error */
  int errnum;
  char *error;

  struct batch cur; /* being filled by the reading thread */
  /* The writer thread's own: batches written, oldest first, whose
   * buffers wait for their writes to complete. */
  struct batch written[STREAM_WRITTEN];
  unsigned whead, wcount;
  pthread_t thread;
  bool started;

  /* Counters, for -v. */
  uint64_t batches, waits_reader, waits_writer;
  double write_seconds;
};

/* Set the writer's error for the reading thread. */
static int
writer_error (struct stream *s)
{
  /* s->error has the system's text already. */
  if (s->error != NULL)
    set_error (-s->errnum, "%s", s->error);
  else
    set_error (s->errnum, "the writer failed");
  return -1;
}

/* Write one batch: runs of data chunks one after the other in the guest
 * go in one call, straight from the read buffers. */
static int
write_batch (struct stream *s, const struct batch *b)
{
  struct iovec iov[STREAM_BATCH];
  uint64_t start = 0, end = 0;
  int n = 0;

  for (unsigned i = 0; i <= b->n; i++) {
    const struct item *it = i < b->n ? &b->items[i] : NULL;

    if (n > 0
        && (it == NULL || it->kind != NBD_RANGE_DATA || it->offset != end)) {
      if (qcow2_pipeline_writev (s->p, start, iov, n) == -1)
        return -1;
      n = 0;
    }
    if (it == NULL)
      break;
    if (it->kind == NBD_RANGE_ZERO) {
      if (qcow2_pipeline_zero (s->p, it->offset, it->length) == -1)
        return -1;
      continue;
    }
    if (n == 0)
      start = it->offset;
    iov[n].iov_base = it->buf;
    iov[n++].iov_len = (size_t) it->length;
    end = it->offset + it->length;
  }
  return 0;
}

/* Give a written batch's buffers back.  Under the lock. */
static void
give_back (struct stream *s, struct batch *b)
{
  for (unsigned i = 0; i < b->n; i++)
    if (b->items[i].buf != NULL)
      s->spare[s->nspare++] = b->items[i].buf;
  b->n = 0;
}

/* The writer failed: r == -1 with the error set.  Under the lock. */
static void
writer_failed (struct stream *s)
{
  if (s->failed)
    return;
  s->errnum = get_errno ();
  s->error = strdup (get_error ());
  s->stop = true;
  /* Read without the lock by stream_chunk. */
  __atomic_store_n (&s->failed, true, __ATOMIC_RELEASE);
}

/* Give back the buffers of the written batches whose writes completed:
 * the oldest one waited for when block.  Not under the lock. */
static int
retire (struct stream *s, bool block)
{
  unsigned n = 0;
  int r = 0, w;

  while (n < s->wcount) {
    struct batch *b = &s->written[(s->whead + n) % STREAM_WRITTEN];

    w = qcow2_pipeline_wait (s->p, b->ticket, block && n == 0);
    if (w == 0)
      break;
    if (w == -1)
      r = -1; /* its buffers are free all the same */
    n++;
  }
  if (n == 0 && r == 0)
    return 0;
  pthread_mutex_lock (&s->lock);
  for (unsigned i = 0; i < n; i++)
    give_back (s, &s->written[(s->whead + i) % STREAM_WRITTEN]);
  s->whead = (s->whead + n) % STREAM_WRITTEN;
  s->wcount -= n;
  if (r == -1)
    writer_failed (s);
  pthread_cond_signal (&s->to_reader);
  pthread_mutex_unlock (&s->lock);
  return r;
}

static void *
writer_main (void *arg)
{
  struct stream *s = arg;
  struct batch *b;
  double t;
  int r;

  pthread_mutex_lock (&s->lock);
  for (;;) {
    while (s->count == 0 && !s->done && !s->stop) {
      if (s->wcount > 0) {
        /* Nothing to write: the oldest writes' buffers are wanted. */
        pthread_mutex_unlock (&s->lock);
        retire (s, true);
        pthread_mutex_lock (&s->lock);
        continue;
      }
      s->waits_writer++;
      pthread_cond_wait (&s->to_writer, &s->lock);
    }
    if (s->stop || s->count == 0)
      break;
    b = &s->written[(s->whead + s->wcount) % STREAM_WRITTEN];
    *b = s->queue[s->head];
    s->head = (s->head + 1) % STREAM_QUEUE;
    s->count--;
    s->wcount++;
    pthread_cond_signal (&s->to_reader);
    pthread_mutex_unlock (&s->lock);
    t = monotonic_seconds ();
    r = write_batch (s, b);
    b->ticket = qcow2_pipeline_ticket (s->p);
    if (r == 0)
      r = retire (s, s->wcount == STREAM_WRITTEN);
    pthread_mutex_lock (&s->lock);
    s->write_seconds += monotonic_seconds () - t;
    if (r == -1) {
      writer_failed (s);
      pthread_cond_signal (&s->to_reader);
      break;
    }
  }
  pthread_mutex_unlock (&s->lock);
  /* No buffer goes back (or is freed) while a write from it is in
   * flight. */
  while (s->wcount > 0)
    retire (s, true);
  /* The error went to s->error: this thread's copy would leak with it. */
  error_clear ();
  return NULL;
}

/* Queue the batch being filled for the writer. */
static int
hand_over (struct stream *s)
{
  if (s->cur.n == 0)
    return 0;
  pthread_mutex_lock (&s->lock);
  while (s->count == STREAM_QUEUE && !s->failed) {
    s->waits_reader++;
    pthread_cond_wait (&s->to_reader, &s->lock);
  }
  if (s->failed) {
    pthread_mutex_unlock (&s->lock);
    return writer_error (s);
  }
  s->queue[(s->head + s->count) % STREAM_QUEUE] = s->cur;
  s->count++;
  s->batches++;
  s->cur.n = 0;
  pthread_cond_signal (&s->to_writer);
  pthread_mutex_unlock (&s->lock);
  return 0;
}

/* nbd_source_copy's buffers: given back ones first, new ones up to the
 * bound, else wait for the writer (after handing it what is waiting). */
static void *
stream_buffer_get (void *opaque, size_t size)
{
  struct stream *s = opaque;
  void *buf = NULL;

  pthread_mutex_lock (&s->lock);
  while (s->nspare == 0 && s->allocated == s->max_buffers && !s->failed) {
    if (s->cur.n > 0) {
      pthread_mutex_unlock (&s->lock);
      if (hand_over (s) == -1)
        return NULL;
      pthread_mutex_lock (&s->lock);
      continue;
    }
    s->waits_reader++;
    pthread_cond_wait (&s->to_reader, &s->lock);
  }
  if (s->failed) {
    pthread_mutex_unlock (&s->lock);
    writer_error (s);
    return NULL;
  }
  if (s->nspare > 0)
    buf = s->spare[--s->nspare];
  else if (posix_memalign (&buf, STREAM_ALIGN, size) == 0)
    s->allocated++;
  else
    buf = NULL;
  pthread_mutex_unlock (&s->lock);
  if (buf == NULL)
    set_error (ENOMEM, "allocating a read buffer");
  return buf;
}

static int
stream_chunk (void *opaque, struct nbd_chunk *chunk)
{
  struct stream *s = opaque;
  struct item *it;

  if (__atomic_load_n (&s->failed, __ATOMIC_ACQUIRE))
    return writer_error (s);
  if (s->fn (s->opaque, chunk) == -1)
    return -1;
  it = &s->cur.items[s->cur.n++];
  it->offset = chunk->offset;
  it->length = chunk->length;
  it->kind = chunk->kind;
  it->buf = chunk->kind == NBD_RANGE_DATA ? nbd_chunk_steal_data (chunk) : NULL;
  if (s->cur.n == STREAM_BATCH)
    return hand_over (s);
  return 0;
}

static void
stream_release (struct stream *s)
{
  for (unsigned i = 0; i < s->count; i++)
    give_back (s, &s->queue[(s->head + i) % STREAM_QUEUE]);
  give_back (s, &s->cur);
  for (unsigned i = 0; i < s->nspare; i++)
    free (s->spare[i]);
  free (s->spare);
  free (s->error);
  pthread_cond_destroy (&s->to_reader);
  pthread_cond_destroy (&s->to_writer);
  pthread_mutex_destroy (&s->lock);
}

/* The end: wait for the writer, after everything (ok) or nothing more
 * (failed) was written. */
static int
stream_end (struct stream *s, bool ok)
{
  if (ok && hand_over (s) == -1)
    ok = false;
  pthread_mutex_lock (&s->lock);
  if (ok)
    s->done = true;
  else
    s->stop = true;
  pthread_cond_signal (&s->to_writer);
  pthread_mutex_unlock (&s->lock);
  if (s->started)
    pthread_join (s->thread, NULL);
  s->started = false;
  if (ok && s->failed)
    return writer_error (s);
  return ok ? 0 : -1;
}

int
backup_stream_copy (struct nbd_source *src, const struct nbd_read_options *ro,
                    struct qcow2_pipeline *p, nbd_chunk_fn fn, void *opaque,
                    struct nbd_copy_stats *stats)
{
  struct nbd_read_options o = *ro;
  struct stream s = { .p = p, .fn = fn, .opaque = opaque };
  unsigned requests
    = o.max_requests ? o.max_requests : NBD_DEFAULT_MAX_REQUESTS;
  double t0 = monotonic_seconds ();
  int r, e;

  s.max_buffers = requests + STREAM_SPARE;
  pthread_mutex_init (&s.lock, NULL);
  pthread_cond_init (&s.to_writer, NULL);
  pthread_cond_init (&s.to_reader, NULL);
  s.spare = calloc (s.max_buffers, sizeof *s.spare);
  if (s.spare == NULL) {
    set_error (ENOMEM, "copy");
    stream_release (&s);
    return -1;
  }
  e = pthread_create (&s.thread, NULL, writer_main, &s);
  if (e != 0) {
    set_error (e, "starting the writer thread");
    stream_release (&s);
    return -1;
  }
  s.started = true;
  o.buffer_get = stream_buffer_get;
  o.buffer_opaque = &s;
  r = nbd_source_copy (src, &o, stream_chunk, &s, stats);
  if (r == -1) {
    struct error_saved err;

    error_save (&err);
    stream_end (&s, false);
    error_restore (&err);
  }
  else
    r = stream_end (&s, true);
  debug (DEBUG_NBD,
         "copy on two threads: %.2f s, writer busy %.2f s; %" PRIu64
         " batches, %u buffers of up to %u, waits: reader %" PRIu64
         ", writer %" PRIu64,
         monotonic_seconds () - t0, s.write_seconds, s.batches, s.allocated,
         s.max_buffers, s.waits_reader, s.waits_writer);
  stream_release (&s);
  return r;
}
