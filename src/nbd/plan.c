/* SPDX-License-Identifier: Apache-2.0 */
/* plan.c: turn block status extents into cluster ranges, window by window. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/debug.h"
#include "common/error.h"
#include "internal.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))

enum plan_kind {
  PLAN_SKIP,
  PLAN_DATA,
  PLAN_ZERO,
};

void
nbd_planner_init (struct nbd_planner *p, uint64_t size, uint32_t cluster,
                  bool incremental, nbd_range_fn emit, void *opaque)
{
  *p = (struct nbd_planner) {
    .size = size,
    .cluster = cluster,
    .incremental = incremental,
    .emit = emit,
    .opaque = opaque,
  };
}

bool
nbd_planner_done (const struct nbd_planner *p)
{
  return p->pos >= p->size;
}

/* What to do with clusters where some byte is dirty (dirty) and some
 * byte may be non-zero (nonzero). */
static enum plan_kind
planner_classify (const struct nbd_planner *p, bool dirty, bool nonzero)
{
  if (!p->incremental)
    return nonzero ? PLAN_DATA : PLAN_SKIP;
  if (!dirty)
    return PLAN_SKIP;
  return nonzero ? PLAN_DATA : PLAN_ZERO;
}

static int
planner_flush (struct nbd_planner *p)
{
  if (!p->have_pending)
    return 0;
  p->have_pending = false;
  return p->emit (p->opaque, &p->pending);
}

/* Add whole clusters [offset, offset + length) of one kind, merging
 * with the pending range when they touch. */
static int
planner_add (struct nbd_planner *p, uint64_t offset, uint64_t length,
             enum plan_kind kind)
{
  /* Set by every case (-Wswitch-enum); gcc's sanitizer builds cannot
   * tell and warn. */
  enum nbd_range_kind rk = NBD_RANGE_DATA;

  switch (kind) {
  case PLAN_SKIP:
    return 0;
  case PLAN_DATA:
    rk = NBD_RANGE_DATA;
    p->data_bytes += length;
    break;
  case PLAN_ZERO:
    rk = NBD_RANGE_ZERO;
    p->zero_bytes += length;
    break;
  }

  if (p->have_pending && p->pending.kind == rk
      && p->pending.offset + p->pending.length == offset) {
    p->pending.length += length;
    return 0;
  }
  if (planner_flush (p) == -1)
    return -1;
  p->pending = (struct nbd_range) { offset, length, rk };
  p->have_pending = true;
  return 0;
}

/* Classify the next length bytes (from p->pos), all of one state. */
static int
planner_feed (struct nbd_planner *p, uint64_t length, bool dirty, bool nonzero)
{
  uint64_t end = p->pos + length;
  uint64_t start, cend, whole;

  /* Finish the cluster we are in the middle of. */
  if (p->pos % p->cluster != 0) {
    start = p->pos - p->pos % p->cluster;
    cend = MIN (start + p->cluster, p->size);
    p->cur_dirty |= dirty;
    p->cur_nonzero |= nonzero;
    if (end < cend) {
      p->pos = end;
      return 0;
    }
    if (planner_add (p, start, cend - start,
                     planner_classify (p, p->cur_dirty, p->cur_nonzero))
        == -1)
      return -1;
    p->pos = cend;
  }
  if (p->pos >= end)
    return 0;

  /* Whole clusters (the short last one included) share this state. */
  if (end == p->size)
    whole = end - p->pos;
  else
    whole = (end - p->pos) / p->cluster * p->cluster;
  if (whole > 0) {
    if (planner_add (p, p->pos, whole, planner_classify (p, dirty, nonzero))
        == -1)
      return -1;
    p->pos += whole;
  }

  /* Start a cluster that the next extent finishes. */
  if (p->pos < end) {
    p->cur_dirty = dirty;
    p->cur_nonzero = nonzero;
    p->pos = end;
  }
  return 0;
}

/* The end of what extents describe from offset, clipped to limit. */
static uint64_t
extents_end (uint64_t offset, const struct nbd_block_extent *e, size_t n,
             uint64_t limit)
{
  size_t i;

  for (i = 0; i < n && offset < limit; i++)
    offset += MIN (e[i].length, limit - offset);
  return MIN (offset, limit);
}

int
nbd_planner_window (struct nbd_planner *p, const struct nbd_block_extent *base,
                    size_t nbase, const struct nbd_block_extent *dirty,
                    size_t ndirty)
{
  uint64_t end, seg, ra = 0, rb = 0;
  size_t i = 0, j = 0;
  bool is_dirty = true;

  end = extents_end (p->pos, base, nbase, p->size);
  if (p->incremental)
    end = MIN (end, extents_end (p->pos, dirty, ndirty, p->size));
  if (end <= p->pos) {
    set_error (EPROTO, "nbd server described no extents at offset %" PRIu64,
               p->pos);
    return -1;
  }

  while (p->pos < end) {
    while (ra == 0)
      ra = base[i++].length;
    seg = MIN (ra, end - p->pos);
    if (p->incremental) {
      while (rb == 0)
        rb = dirty[j++].length;
      is_dirty = (dirty[j - 1].flags & NBD_EXTENT_DIRTY) != 0;
      seg = MIN (seg, rb);
    }
    if (planner_feed (p, seg, is_dirty,
                      (base[i - 1].flags & NBD_EXTENT_ZERO) == 0)
        == -1)
      return -1;
    ra -= seg;
    if (p->incremental)
      rb -= seg;
  }
  return planner_flush (p);
}

void
nbd_walk_init (struct nbd_walk *w, uint64_t size, uint32_t cluster,
               uint64_t window, bool incremental, nbd_block_status_fn status,
               void *status_opaque, nbd_range_fn emit, void *emit_opaque)
{
  *w = (struct nbd_walk) {
    .window = window,
    .status = status,
    .status_opaque = status_opaque,
    .base = empty_vector,
    .dirty = empty_vector,
  };
  nbd_planner_init (&w->planner, size, cluster, incremental, emit, emit_opaque);
}

void
nbd_walk_release (struct nbd_walk *w)
{
  nbd_block_extent_vector_reset (&w->base);
  nbd_block_extent_vector_reset (&w->dirty);
}

int
nbd_walk_step (struct nbd_walk *w)
{
  struct nbd_planner *p = &w->planner;
  uint64_t offset = p->pos;
  uint64_t count = MIN (w->window, p->size - offset);

  if (nbd_planner_done (p))
    return 0;
  w->base.len = 0;
  w->dirty.len = 0;
  if (w->status (w->status_opaque, offset, count, &w->base, &w->dirty) == -1)
    return -1;
  w->windows++;
  if (nbd_planner_window (p, w->base.ptr, w->base.len, w->dirty.ptr,
                          w->dirty.len)
      == -1)
    return -1;
  debug (DEBUG_NBD,
         "plan window %" PRIu64 "+%" PRIu64
         ": %zu allocation extents, %zu bitmap extents, planned to %" PRIu64
         " (data %" PRIu64 ", zero %" PRIu64 ")",
         offset, count, w->base.len, w->dirty.len, p->pos, p->data_bytes,
         p->zero_bytes);
  return 1;
}

int
nbd_read_options_resolve (const struct nbd_read_options *o,
                          struct nbd_read_options *out)
{
  static const struct nbd_read_options none;

  if (o == NULL)
    o = &none;
  *out = *o;
  if (out->cluster_size == 0)
    out->cluster_size = NBD_DEFAULT_CLUSTER_SIZE;
  if (out->window_size == 0)
    out->window_size = NBD_DEFAULT_WINDOW_SIZE;
  if (out->max_requests == 0)
    out->max_requests = NBD_DEFAULT_MAX_REQUESTS;
  if (out->request_size == 0)
    out->request_size = NBD_DEFAULT_REQUEST_SIZE;
  if (out->timeout_ms < 0)
    out->timeout_ms = 0;

  if (out->cluster_size < 512
      || (out->cluster_size & (out->cluster_size - 1)) != 0) {
    set_error (EINVAL, "cluster size %" PRIu32 " is not a power of two >= 512",
               out->cluster_size);
    return -1;
  }
  if (out->window_size > NBD_MAX_WINDOW) {
    set_error (EINVAL, "block status window %" PRIu64 " is over 4 GiB - 1",
               out->window_size);
    return -1;
  }
  if (out->max_requests > 1024) {
    set_error (EINVAL, "%u requests in flight is over the limit of 1024",
               out->max_requests);
    return -1;
  }
  return 0;
}
