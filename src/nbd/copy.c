/* SPDX-License-Identifier: Apache-2.0 */
/* copy.c: read the plan with bounded async reads, delivered in offset order. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "internal.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))

enum slot_state {
  SLOT_FREE,
  SLOT_IN_FLIGHT, /* libnbd owns buf until the completion callback */
  SLOT_DONE,      /* waiting for the slots before it to be delivered */
};

/* One entry of the ring of requests, in offset order from head. */
struct slot {
  uint64_t offset;
  uint64_t length;
  enum nbd_range_kind kind;
  enum slot_state state;
  int err;
  void *buf;      /* request_size bytes, kept for reuse; NULL until needed */
  int64_t cookie; /* a read's until it is retired, else 0 */
  unsigned conn;  /* the connection it went to */
};

struct copy {
  struct nbd_source *s;
  struct nbd_read_options o;
  uint32_t request_size;
  struct slot *ring;
  size_t nr_slots, head, count;
  struct nbd_status_ctx status;
  struct nbd_walk walk;
  nbd_range_vector queue; /* the current window's ranges */
  size_t next;            /* the range being issued */
  uint64_t consumed;      /* bytes of it issued */
  bool plan_done;
  nbd_chunk_fn fn;
  void *opaque;
  struct nbd_copy_stats *stats;
};

void *
nbd_chunk_steal_data (struct nbd_chunk *chunk)
{
  void *data = chunk->data;

  chunk->data = NULL;
  return data;
}

/* The planner's ranges go to the queue the reads are issued from. */
static int
copy_queue_range (void *opaque, const struct nbd_range *range)
{
  struct copy *c = opaque;

  if (nbd_range_vector_append (&c->queue, *range) == -1) {
    set_error (ENOMEM, "nbd plan");
    return -1;
  }
  return 0;
}

/* The read's completion.  It returns 0, leaving the command to be
 * retired by copy_retire: libnbd 1.14 reads a command after issuing it,
 * and a command failed and retired while being issued (the server just
 * died) would be read after it was freed. */
static int
copy_read_done (void *opaque, int *error)
{
  struct slot *slot = opaque;

  slot->err = *error;
  slot->state = SLOT_DONE;
  return 0;
}

static void
copy_retire (struct copy *c, struct slot *slot)
{
  struct nbd_handle *h = c->s->h[slot->conn];

  if (slot->cookie > 0 && slot->state == SLOT_DONE && h != NULL)
    (void) nbd_aio_command_completed (h, slot->cookie);
  slot->cookie = 0;
}

/* Reads go to the live connection with the fewest commands in flight.
 * -1 when none is left. */
static int
copy_pick_conn (struct copy *c)
{
  unsigned i, n, least = ~0u;
  int best = -1;

  for (i = 0; i < c->s->nr_conns; i++) {
    if (!nbd_source_alive (c->s, i))
      continue;
    n = nbd_source_in_flight (c->s, i);
    if (n < least) {
      least = n;
      best = i;
    }
  }
  return best;
}

static int
copy_send (struct copy *c, struct slot *slot)
{
  nbd_completion_callback cb
    = { .callback = copy_read_done, .user_data = slot };
  int64_t cookie;
  int conn = copy_pick_conn (c);

  if (c->s->broken || conn == -1) {
    set_error (ENOTCONN, "nbd read at %" PRIu64 ": %s", slot->offset,
               NBD_LOST_CONNECTION);
    return -1;
  }
  if (slot->buf == NULL && c->o.buffer_get != NULL) {
    slot->buf = c->o.buffer_get (c->o.buffer_opaque, c->request_size);
    if (slot->buf == NULL)
      return -1;
  }
  else if (slot->buf == NULL) {
    slot->buf = malloc (c->request_size);
    if (slot->buf == NULL) {
      set_error (errno, "nbd read at %" PRIu64, slot->offset);
      return -1;
    }
  }
  slot->state = SLOT_IN_FLIGHT;
  slot->err = 0;
  slot->conn = conn;
  cookie = nbd_aio_pread (c->s->h[slot->conn], slot->buf, slot->length,
                          slot->offset, cb, 0);
  if (cookie == -1) {
    slot->state = SLOT_FREE;
    nbd_error_from_libnbd ("nbd read at %" PRIu64, slot->offset);
    return -1;
  }
  slot->cookie = cookie;
  c->stats->requests++;
  return 0;
}

/* Put the next piece of the plan in the ring: a read of up to
 * request_size bytes, or a whole zero range. */
static int
copy_issue (struct copy *c)
{
  const struct nbd_range *r = &c->queue.ptr[c->next];
  struct slot *slot = &c->ring[(c->head + c->count) % c->nr_slots];

  slot->offset = r->offset + c->consumed;
  slot->length = r->length - c->consumed;
  slot->kind = r->kind;
  switch (r->kind) {
  case NBD_RANGE_ZERO:
    slot->state = SLOT_DONE;
    slot->err = 0;
    break;
  case NBD_RANGE_DATA:
    slot->length = MIN (slot->length, c->request_size);
    if (copy_send (c, slot) == -1)
      return -1;
    break;
  }
  c->count++;
  c->consumed += slot->length;
  if (c->consumed == r->length) {
    c->next++;
    c->consumed = 0;
  }
  return 0;
}

/* Issue reads until the ring is full or the plan is finished, planning
 * the next window when the current one has been issued. */
static int
copy_fill (struct copy *c)
{
  int r;

  while (c->count < c->nr_slots) {
    if (c->next < c->queue.len) {
      if (copy_issue (c) == -1)
        return -1;
      continue;
    }
    if (c->plan_done)
      return 0;
    if (c->count == 0)
      c->stats->offset = c->walk.planner.pos;
    c->queue.len = 0;
    c->next = 0;
    c->consumed = 0;
    r = nbd_walk_step (&c->walk);
    c->stats->windows = c->walk.windows;
    if (r == -1)
      return -1;
    if (r == 0)
      c->plan_done = true;
  }
  return 0;
}

/* Hand the finished slots at the head of the ring to the consumer. */
static int
copy_deliver (struct copy *c)
{
  struct slot *slot;
  struct nbd_chunk chunk;
  int r;

  while (c->count > 0 && c->ring[c->head].state == SLOT_DONE) {
    slot = &c->ring[c->head];
    copy_retire (c, slot);
    if (slot->err == ENOTCONN) {
      set_error (ENOTCONN, "nbd read at %" PRIu64 ": %s", slot->offset,
                 NBD_LOST_CONNECTION);
      return -1;
    }
    if (slot->err) {
      set_error (slot->err, "nbd read at %" PRIu64, slot->offset);
      return -1;
    }
    chunk = (struct nbd_chunk) {
      .offset = slot->offset,
      .length = slot->length,
      .kind = slot->kind,
      .data = slot->kind == NBD_RANGE_DATA ? slot->buf : NULL,
    };
    r = c->fn (c->opaque, &chunk);
    if (slot->kind == NBD_RANGE_DATA && chunk.data == NULL)
      slot->buf = NULL; /* the consumer took it */
    if (r == -1)
      return -1;
    slot->state = SLOT_FREE;
    c->head = (c->head + 1) % c->nr_slots;
    c->count--;
    c->stats->offset = chunk.offset + chunk.length;
    if (chunk.kind == NBD_RANGE_DATA)
      c->stats->bytes_read += chunk.length;
    else
      c->stats->bytes_zero += chunk.length;
  }
  return 0;
}

static bool
copy_any_in_flight (const struct copy *c)
{
  size_t i;

  for (i = 0; i < c->nr_slots; i++)
    if (c->ring[i].state == SLOT_IN_FLIGHT)
      return true;
  return false;
}

static bool
copy_cancelled (const struct copy *c)
{
  return c->o.cancel != NULL && *c->o.cancel != 0;
}

/* After a failure: let the reads in flight finish (or fail) so that no
 * buffer is still libnbd's when it is freed.  Keeps the first error. */
static void
copy_drain (struct copy *c)
{
  CLEANUP_FREE char *msg = strdup (get_error ());
  int errnum = get_errno ();

  while (copy_any_in_flight (c) && !copy_cancelled (c))
    if (nbd_source_wait (c->s, c->o.timeout_ms) == -1)
      break;
  if (copy_any_in_flight (c))
    nbd_source_close_all (c->s);

  if (msg)
    nbd_error_set (errnum, msg);
}

static int
copy_run (struct copy *c)
{
  const struct slot *head;

  for (;;) {
    if (copy_fill (c) == -1 || copy_deliver (c) == -1)
      return -1;
    if (c->count == 0) {
      if (c->plan_done && c->next == c->queue.len)
        return 0;
      continue;
    }
    head = &c->ring[c->head];
    if (nbd_source_wait (c->s, c->o.timeout_ms) == -1) {
      error_prepend ("nbd read at %" PRIu64, head->offset);
      return -1;
    }
    if (copy_cancelled (c)) {
      set_error (EINTR, "interrupted");
      return -1;
    }
  }
}

/* The largest read: whole clusters, within the server's limit. */
static int
copy_request_size (struct copy *c)
{
  uint32_t cluster = c->o.cluster_size;
  uint32_t size = c->o.request_size - c->o.request_size % cluster;

  if (size < cluster)
    size = cluster;
  if (size > c->s->max_block)
    size = c->s->max_block - c->s->max_block % cluster;
  if (size == 0) {
    set_error (EINVAL,
               "cluster size %" PRIu32
               " is over the server's largest request (%" PRIu32 " bytes)",
               cluster, c->s->max_block);
    return -1;
  }
  if (cluster % c->s->min_block != 0) {
    set_error (EINVAL,
               "cluster size %" PRIu32
               " is not a multiple of the server's minimum block size %" PRIu32,
               cluster, c->s->min_block);
    return -1;
  }
  c->request_size = size;
  return 0;
}

static void
copy_release (struct copy *c)
{
  size_t i;

  if (c->ring)
    for (i = 0; i < c->nr_slots; i++) {
      copy_retire (c, &c->ring[i]);
      free (c->ring[i].buf);
    }
  free (c->ring);
  nbd_status_ctx_release (&c->status);
  nbd_range_vector_reset (&c->queue);
  nbd_walk_release (&c->walk);
}

int
nbd_source_copy (struct nbd_source *s, const struct nbd_read_options *o,
                 nbd_chunk_fn fn, void *opaque, struct nbd_copy_stats *stats)
{
  struct nbd_copy_stats dummy;
  struct copy c = { .s = s, .fn = fn, .opaque = opaque, .queue = empty_vector };
  int r;

  c.stats = stats ? stats : &dummy;
  *c.stats = (struct nbd_copy_stats) { 0 };
  if (nbd_read_options_resolve (o, &c.o) == -1 || copy_request_size (&c) == -1)
    return -1;
  if (s->broken) {
    set_error (ENOTCONN, "nbd export '%s': the connection failed earlier",
               s->export_name);
    return -1;
  }
  c.nr_slots = c.o.max_requests;
  c.ring = calloc (c.nr_slots, sizeof *c.ring);
  if (c.ring == NULL) {
    set_error (errno, "nbd copy");
    return -1;
  }
  c.status = (struct nbd_status_ctx) {
    .s = s,
    .timeout_ms = c.o.timeout_ms,
    .prefetch = true,
    .cancel = c.o.cancel,
  };
  nbd_walk_init (&c.walk, s->size, c.o.cluster_size, c.o.window_size,
                 s->bitmap != NULL, nbd_source_block_status, &c.status,
                 copy_queue_range, &c);
  debug (DEBUG_NBD,
         "copy '%s': %s, cluster %" PRIu32 ", window %" PRIu64
         ", %zu requests of up to %" PRIu32 " bytes (buffers <= %" PRIu64
         " MiB), %u connection(s)",
         s->export_name, s->bitmap ? "incremental" : "full", c.o.cluster_size,
         c.o.window_size, c.nr_slots, c.request_size,
         (uint64_t) c.nr_slots * c.request_size >> 20, s->nr_conns);

  r = copy_run (&c);
  if (r == -1) {
    debug (DEBUG_NBD, "copy '%s' failed: %s", s->export_name, get_error ());
    copy_drain (&c);
  }
  else
    c.stats->offset = s->size;
  copy_release (&c);
  return r;
}
