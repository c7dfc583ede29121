/* SPDX-License-Identifier: Apache-2.0 */
/* test-nbd-plan.c: the extent planner, alone and walking a fake server. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "nbd/internal.h"

#define K (UINT64_C (1024))
#define M (K * K)
#define G (K * M)
#define T (K * G)
#define C64 (64 * K)

#define DATA NBD_RANGE_DATA
#define ZERO NBD_RANGE_ZERO
#define HZ (NBD_EXTENT_HOLE | NBD_EXTENT_ZERO)

/* A disk map: extents with absolute offsets, covering [0, size). */
struct map_extent {
  uint64_t start;
  uint64_t length;
  uint32_t flags;
};

DEFINE_VECTOR_TYPE (map_vector, struct map_extent)

/* Collects what the planner emits. */
struct collect {
  nbd_range_vector ranges;
  int fail_after; /* > 0: the Nth emit fails */
};

static int
collect_range (void *opaque, const struct nbd_range *r)
{
  struct collect *c = opaque;

  if (c->fail_after > 0 && (int) c->ranges.len + 1 == c->fail_after) {
    set_error (ENOSPC, "consumer full");
    return -1;
  }
  assert_int_equal (nbd_range_vector_append (&c->ranges, *r), 0);
  return 0;
}

static void
assert_range (const struct collect *c, size_t i, uint64_t offset,
              uint64_t length, enum nbd_range_kind kind)
{
  assert_true (i < c->ranges.len);
  if (c->ranges.ptr[i].offset != offset || c->ranges.ptr[i].length != length
      || c->ranges.ptr[i].kind != kind)
    fail_msg ("range %zu is %s %" PRIu64 "+%" PRIu64 ", expected %s %" PRIu64
              "+%" PRIu64,
              i, c->ranges.ptr[i].kind == DATA ? "data" : "zero",
              c->ranges.ptr[i].offset, c->ranges.ptr[i].length,
              kind == DATA ? "data" : "zero", offset, length);
}

/* Plan size bytes in one window from relative extents. */
static void
plan_one (struct collect *c, uint64_t size, uint32_t cluster,
          const struct nbd_block_extent *base, size_t nbase,
          const struct nbd_block_extent *dirty, size_t ndirty)
{
  struct nbd_planner p;

  *c = (struct collect) { .ranges = empty_vector };
  nbd_planner_init (&p, size, cluster, dirty != NULL, collect_range, c);
  assert_int_equal (nbd_planner_window (&p, base, nbase, dirty, ndirty), 0);
  assert_true (nbd_planner_done (&p));
}

#define N(a) (sizeof (a) / sizeof ((a)[0]))

static void
test_full_basic (void **state)
{
  struct nbd_block_extent base[]
    = { { 128 * K, 0 }, { 384 * K, HZ }, { 512 * K, 0 } };
  struct collect c = { 0 };

  plan_one (&c, M, C64, base, N (base), NULL, 0);
  assert_int_equal (c.ranges.len, 2);
  assert_range (&c, 0, 0, 128 * K, DATA);
  assert_range (&c, 1, 512 * K, 512 * K, DATA);
  nbd_range_vector_reset (&c.ranges);
}

/* ZERO alone (allocated zeroes) is skipped; HOLE alone may hold
 * anything, so it is read. */
static void
test_full_zero_and_hole (void **state)
{
  struct nbd_block_extent base[]
    = { { C64, NBD_EXTENT_ZERO }, { C64, NBD_EXTENT_HOLE }, { C64, HZ } };
  struct collect c = { 0 };

  plan_one (&c, 3 * C64, C64, base, N (base), NULL, 0);
  assert_int_equal (c.ranges.len, 1);
  assert_range (&c, 0, C64, C64, DATA);
  nbd_range_vector_reset (&c.ranges);
}

/* Unaligned data rounds outward to whole clusters. */
static void
test_full_unaligned (void **state)
{
  struct nbd_block_extent base[] = {
    { 100, HZ },         { 100, 0 },
    { C64 - 201, HZ },   { 2, 0 }, /* 64K-1 .. 64K+1: two clusters */
    { 3 * C64 - 1, HZ }, { 1, 0 }, /* first byte of cluster 4 */
    { 4 * C64 - 1, HZ },
  };
  struct collect c = { 0 };

  plan_one (&c, 8 * C64, C64, base, N (base), NULL, 0);
  assert_int_equal (c.ranges.len, 2);
  assert_range (&c, 0, 0, 2 * C64, DATA);
  assert_range (&c, 1, 4 * C64, C64, DATA);
  nbd_range_vector_reset (&c.ranges);
}

/* Neighbours of one kind merge, whatever the extents look like. */
static void
test_full_merge (void **state)
{
  struct nbd_block_extent base[] = {
    { C64, 0 },     { 1000, 0 }, { 1000, HZ }, { C64 - 2000, 0 },
    { 3 * C64, 0 }, { C64, HZ }, { C64, 0 },
  };
  struct collect c = { 0 };

  plan_one (&c, 7 * C64, C64, base, N (base), NULL, 0);
  assert_int_equal (c.ranges.len, 2);
  assert_range (&c, 0, 0, 5 * C64, DATA);
  assert_range (&c, 1, 6 * C64, C64, DATA);
  nbd_range_vector_reset (&c.ranges);
}

/* A disk whose size is not a multiple of the cluster size. */
static void
test_short_last_cluster (void **state)
{
  uint64_t size = 3 * C64 + 4608;
  struct nbd_block_extent all[] = { { size, 0 } };
  struct nbd_block_extent tail[] = { { 3 * C64 + 100, HZ }, { 4508, 0 } };
  struct nbd_block_extent dirty[] = { { 3 * C64, 0 }, { 4608, 1 } };
  struct nbd_block_extent zero[] = { { size, HZ } };
  struct collect c = { 0 };

  plan_one (&c, size, C64, all, N (all), NULL, 0);
  assert_int_equal (c.ranges.len, 1);
  assert_range (&c, 0, 0, size, DATA);
  nbd_range_vector_reset (&c.ranges);

  plan_one (&c, size, C64, tail, N (tail), NULL, 0);
  assert_int_equal (c.ranges.len, 1);
  assert_range (&c, 0, 3 * C64, 4608, DATA);
  nbd_range_vector_reset (&c.ranges);

  plan_one (&c, size, C64, zero, N (zero), dirty, N (dirty));
  assert_int_equal (c.ranges.len, 1);
  assert_range (&c, 0, 3 * C64, 4608, ZERO);
  nbd_range_vector_reset (&c.ranges);

  /* Extents running past the end of the disk are clipped. */
  all[0].length = size + 12345;
  plan_one (&c, size, C64, all, N (all), NULL, 0);
  assert_int_equal (c.ranges.len, 1);
  assert_range (&c, 0, 0, size, DATA);
  nbd_range_vector_reset (&c.ranges);
}

static void
test_incremental_basic (void **state)
{
  struct nbd_block_extent base[] = { { M, 0 } };
  struct nbd_block_extent dirty[]
    = { { C64, 0 }, { 2 * C64, 1 }, { 5 * C64, 0 }, { 10, 1 }, { M, 0 } };
  struct collect c = { 0 };

  plan_one (&c, M, C64, base, N (base), dirty, N (dirty));
  assert_int_equal (c.ranges.len, 2);
  assert_range (&c, 0, C64, 2 * C64, DATA);
  assert_range (&c, 1, 8 * C64, C64, DATA);
  nbd_range_vector_reset (&c.ranges);
}

/* Dirty clusters that read as zero are ZERO; a partly zero one is DATA;
 * a cluster half dirty, whose clean half holds data, is DATA. */
static void
test_incremental_zero (void **state)
{
  struct nbd_block_extent base[] = {
    { 2 * C64, HZ },              /* clusters 0-1: zero */
    { C64, 0 },                   /* cluster 2: data */
    { C64 / 2, HZ },              /* cluster 3: half zero, half data */
    { C64 / 2, 0 },               /* */
    { C64 / 2, NBD_EXTENT_ZERO }, /* cluster 4: zero (allocated) */
    { C64 / 2, HZ },              /* */
    { C64 / 2, HZ },              /* cluster 5: zero where dirty, data not */
    { C64 / 2, 0 },               /* */
    { 2 * C64, HZ },              /* clusters 6-7: zero, dirty by a byte */
  };
  struct nbd_block_extent dirty[] = {
    { 5 * C64 + C64 / 2, 1 }, /* clusters 0-4 and half of 5 */
    { C64 / 2, 0 },           /* */
    { 10, 0 },                /* */
    { 1, 1 },                 /* one byte of cluster 6 */
    { 2 * C64, 0 },           /* */
  };
  struct collect c = { 0 };

  plan_one (&c, 8 * C64, C64, base, N (base), dirty, N (dirty));
  assert_int_equal (c.ranges.len, 5);
  assert_range (&c, 0, 0, 2 * C64, ZERO);
  assert_range (&c, 1, 2 * C64, 2 * C64, DATA);
  assert_range (&c, 2, 4 * C64, C64, ZERO);
  assert_range (&c, 3, 5 * C64, C64, DATA);
  assert_range (&c, 4, 6 * C64, C64, ZERO);
  nbd_range_vector_reset (&c.ranges);
}

/* ZERO then DATA then ZERO: three ranges; like kinds merge. */
static void
test_incremental_merge (void **state)
{
  struct nbd_block_extent base[] = {
    { C64, HZ }, { C64, NBD_EXTENT_ZERO }, { 2 * C64, 0 }, { 2 * C64, HZ }
  };
  struct nbd_block_extent dirty[] = { { 3 * C64, 1 }, { 3 * C64, 1 } };
  struct collect c = { 0 };

  plan_one (&c, 6 * C64, C64, base, N (base), dirty, N (dirty));
  assert_int_equal (c.ranges.len, 3);
  assert_range (&c, 0, 0, 2 * C64, ZERO);
  assert_range (&c, 1, 2 * C64, 2 * C64, DATA);
  assert_range (&c, 2, 4 * C64, 2 * C64, ZERO);
  nbd_range_vector_reset (&c.ranges);
}

/* ---- A fake server answering block status from two maps. ---- */

struct fake {
  uint64_t size;
  const struct map_extent *base;
  size_t nbase;
  const struct map_extent *dirty;
  size_t ndirty;
  size_t max_extents;   /* per reply and context (0: no limit) */
  uint64_t dirty_limit; /* the bitmap context describes at most this */
  bool clip;            /* clip the last extent to the request */
  unsigned calls;
  size_t most_extents; /* the most extents one reply held */
};

static void
fake_reply (const struct fake *f, const struct map_extent *map, size_t n,
            uint64_t offset, uint64_t count, size_t max,
            nbd_block_extent_vector *out)
{
  size_t i = 0;
  uint64_t pos = offset, end;

  while (i < n && map[i].start + map[i].length <= offset)
    i++;
  for (; i < n && pos < offset + count; i++) {
    if (max && out->len == max)
      break;
    end = map[i].start + map[i].length;
    if (f->clip && end > offset + count)
      end = offset + count;
    assert_int_equal (
      nbd_block_extent_vector_append (
        out, (struct nbd_block_extent) { end - pos, map[i].flags }),
      0);
    pos = end;
  }
}

static int
fake_status (void *opaque, uint64_t offset, uint64_t count,
             nbd_block_extent_vector *base, nbd_block_extent_vector *dirty)
{
  struct fake *f = opaque;

  assert_true (count > 0 && count <= NBD_MAX_WINDOW);
  assert_true (offset + count <= f->size);
  f->calls++;
  fake_reply (f, f->base, f->nbase, offset, count, f->max_extents, base);
  if (f->dirty)
    fake_reply (f, f->dirty, f->ndirty, offset,
                f->dirty_limit ? f->dirty_limit : count,
                f->max_extents ? f->max_extents + 1 : 0, dirty);
  if (base->len > f->most_extents)
    f->most_extents = base->len;
  return 0;
}

static void
walk_all (struct fake *f, uint32_t cluster, uint64_t window, struct collect *c)
{
  struct nbd_walk w;
  int r;

  *c = (struct collect) { .ranges = empty_vector };
  f->calls = 0;
  nbd_walk_init (&w, f->size, cluster, window, f->dirty != NULL, fake_status, f,
                 collect_range, c);
  while ((r = nbd_walk_step (&w)) == 1)
    ;
  if (r != 0)
    fail_msg ("walk: %s", get_error ());
  assert_int_equal (w.windows, f->calls);
  nbd_walk_release (&w);
}

/* Ranges are sorted, disjoint, cluster aligned (but for a short end). */
static void
assert_well_formed (const struct collect *c, uint64_t size, uint64_t cluster)
{
  size_t i;
  const struct nbd_range *r;

  for (i = 0; i < c->ranges.len; i++) {
    r = &c->ranges.ptr[i];
    assert_true (r->length > 0);
    assert_int_equal (r->offset % cluster, 0);
    assert_true (r->offset + r->length <= size);
    assert_true (r->length % cluster == 0 || r->offset + r->length == size);
    if (i > 0)
      assert_true (c->ranges.ptr[i - 1].offset + c->ranges.ptr[i - 1].length
                   <= r->offset);
  }
}

static bool
same_ranges (const struct collect *a, const struct collect *b)
{
  size_t i;

  if (a->ranges.len != b->ranges.len)
    return false;
  for (i = 0; i < a->ranges.len; i++)
    if (a->ranges.ptr[i].offset != b->ranges.ptr[i].offset
        || a->ranges.ptr[i].length != b->ranges.ptr[i].length
        || a->ranges.ptr[i].kind != b->ranges.ptr[i].kind)
      return false;
  return true;
}

/* Merge touching ranges of one kind (windows split them). */
static void
normalize (struct collect *c)
{
  size_t i, n = 0;
  struct nbd_range *v = c->ranges.ptr;

  for (i = 0; i < c->ranges.len; i++) {
    if (n > 0 && v[n - 1].kind == v[i].kind
        && v[n - 1].offset + v[n - 1].length == v[i].offset)
      v[n - 1].length += v[i].length;
    else
      v[n++] = v[i];
  }
  c->ranges.len = n;
}

/* Window ends split ranges; a cluster across a window end is planned
 * once, from both windows' extents. */
static void
test_window_boundaries (void **state)
{
  const struct map_extent base[] = {
    { 0, 99000, HZ },
    { 99000, 2000, 0 }, /* across 100000 */
    { 101000, 4 * M - 101000, 0 },
  };
  const struct map_extent dirty[] = {
    { 0, 199999, 0 },
    { 199999, 2, 1 }, /* across 200000 */
    { 200001, 4 * M - 200001, 0 },
  };
  struct fake f = { .size = 4 * M, .base = base, .nbase = 3, .clip = true };
  struct collect c;

  /* Full, 100000-byte windows: data from cluster 1 on, split where a
   * window's last whole cluster ends. */
  walk_all (&f, C64, 100000, &c);
  assert_well_formed (&c, f.size, C64);
  assert_int_equal (f.calls, 42);
  assert_range (&c, 0, C64, 2 * C64, DATA);
  assert_true (c.ranges.len > 30);
  normalize (&c);
  assert_int_equal (c.ranges.len, 1);
  assert_range (&c, 0, C64, 4 * M - C64, DATA);
  nbd_range_vector_reset (&c.ranges);

  /* Incremental: two dirty bytes across a window end: one cluster. */
  f.dirty = dirty;
  f.ndirty = 3;
  f.calls = 0;
  walk_all (&f, C64, 100000, &c);
  assert_int_equal (c.ranges.len, 1);
  assert_range (&c, 0, 3 * C64, C64, DATA);
  nbd_range_vector_reset (&c.ranges);
}

/* Servers answer less than asked, with a longer last extent, and the
 * two contexts cover different lengths: same plan as one big window. */
static void
test_server_quirks (void **state)
{
  const struct map_extent base[] = {
    { 0, 3000, 0 },
    { 3000, 70000, HZ },
    { 73000, 5, 0 },
    { 73005, 200000, HZ },
    { 273005, 1 * M, 0 },
    { 273005 + M, M, HZ },
    { 273005 + 2 * M, 3 * M - 273005, 0 },
  };
  const struct map_extent dirty[] = {
    { 0, 65536, 1 },
    { 65536, 65536, 0 },
    { 131072, 300000, 1 },
    { 431072, 2 * M, 0 },
    { 431072 + 2 * M, 3 * M - 431072, 1 },
  };
  struct fake f = { .size = 5 * M, .base = base, .nbase = N (base) };
  struct collect one, quirky;
  int incremental;

  for (incremental = 0; incremental < 2; incremental++) {
    f.dirty = incremental ? dirty : NULL;
    f.ndirty = incremental ? N (dirty) : 0;
    f.max_extents = 0;
    f.dirty_limit = 0;
    f.clip = true;
    walk_all (&f, C64, NBD_MAX_WINDOW, &one);

    f.max_extents = 2;
    f.dirty_limit = 70001;
    f.clip = false;
    walk_all (&f, C64, 1000000, &quirky);
    assert_well_formed (&quirky, f.size, C64);
    normalize (&quirky);
    assert_true (same_ranges (&one, &quirky));
    nbd_range_vector_reset (&one.ranges);
    nbd_range_vector_reset (&quirky.ranges);
  }
}

/* ---- Random maps against a cluster-by-cluster reference. ---- */

static uint64_t rng_state;

static uint64_t
rng (void)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void
random_map (map_vector *v, uint64_t size, uint64_t cluster, uint32_t flags_mask)
{
  uint64_t pos = 0, len;

  v->len = 0;
  while (pos < size) {
    switch (rng () % 3) {
    case 0:
      len = 1 + rng () % 100;
      break;
    case 1:
      len = cluster * (1 + rng () % 4);
      break;
    default:
      len = 1 + rng () % (5 * cluster);
      break;
    }
    if (len > size - pos)
      len = size - pos;
    assert_int_equal (
      map_vector_append (v,
                         (struct map_extent) { pos, len, rng () & flags_mask }),
      0);
    pos += len;
  }
}

/* Does some byte of [start, end) have (or lack, when want == 0) flag? */
static bool
map_any (const map_vector *v, uint64_t start, uint64_t end, uint32_t flag,
         bool want)
{
  size_t i;

  for (i = 0; i < v->len; i++) {
    const struct map_extent *e = &v->ptr[i];
    if (e->start < end && e->start + e->length > start
        && ((e->flags & flag) != 0) == want)
      return true;
  }
  return false;
}

static void
reference_plan (const map_vector *base, const map_vector *dirty, uint64_t size,
                uint64_t cluster, struct collect *c)
{
  uint64_t start, end;
  bool nonzero, is_dirty;
  struct nbd_range r;

  *c = (struct collect) { .ranges = empty_vector };
  for (start = 0; start < size; start += cluster) {
    end = start + cluster < size ? start + cluster : size;
    nonzero = map_any (base, start, end, NBD_EXTENT_ZERO, false);
    is_dirty
      = dirty ? map_any (dirty, start, end, NBD_EXTENT_DIRTY, true) : true;
    if (!is_dirty || (!dirty && !nonzero))
      continue;
    r = (struct nbd_range) { start, end - start, nonzero ? DATA : ZERO };
    assert_int_equal (nbd_range_vector_append (&c->ranges, r), 0);
  }
  normalize (c);
}

static void
test_random_against_reference (void **state)
{
  map_vector base = empty_vector, dirty = empty_vector;
  struct collect ref, got;
  struct fake f;
  uint64_t cluster, size, window;
  int i;

  rng_state = 0x9e3779b97f4a7c15u;
  for (i = 0; i < 400; i++) {
    cluster = UINT64_C (512) << (rng () % 5);
    size = 1 + rng () % (300 * cluster);
    random_map (&base, size, cluster, HZ);
    random_map (&dirty, size, cluster, 1);
    f = (struct fake) {
      .size = size,
      .base = base.ptr,
      .nbase = base.len,
      .dirty = i % 2 ? dirty.ptr : NULL,
      .ndirty = i % 2 ? dirty.len : 0,
      .max_extents = rng () % 4,
      .dirty_limit = rng () % 3 ? 0 : 1 + rng () % (4 * cluster),
      .clip = rng () % 2,
    };
    window = 1 + rng () % (40 * cluster);
    reference_plan (&base, f.dirty ? &dirty : NULL, size, cluster, &ref);
    walk_all (&f, cluster, window, &got);
    assert_well_formed (&got, size, cluster);
    normalize (&got);
    if (!same_ranges (&ref, &got))
      fail_msg ("case %d (size %" PRIu64 ", cluster %" PRIu64
                ", window %" PRIu64 "): %zu ranges, reference %zu",
                i, size, cluster, window, got.ranges.len, ref.ranges.len);
    nbd_range_vector_reset (&ref.ranges);
    nbd_range_vector_reset (&got.ranges);
  }
  map_vector_reset (&base);
  map_vector_reset (&dirty);
}

/* ---- A 4 TiB disk: quick, and one window's extents at a time. ---- */

static void
test_4tib (void **state)
{
  const uint64_t size = 4 * T + 512;
  const struct map_extent base[] = {
    { 0, M, 0 },
    { M, 2 * T - M, HZ },
    { 2 * T, C64 + 1, 0 },
    { 2 * T + C64 + 1, 2 * T - C64 - 1 - 100, HZ },
    { 4 * T - 100, 612, 0 },
  };
  const struct map_extent dirty[] = {
    { 0, 3 * T, 0 },
    { 3 * T, 10 * C64, 1 },
    { 3 * T + 10 * C64, T - 10 * C64 + 512, 0 },
  };
  struct fake f
    = { .size = size, .base = base, .nbase = N (base), .clip = true };
  struct collect c;

  /* Servers answer in 32 bits: extents end at the window's end. */
  walk_all (&f, C64, NBD_DEFAULT_WINDOW_SIZE, &c);
  assert_int_equal (f.calls, 4097);
  if (f.most_extents > 3)
    fail_msg ("%zu extents in one reply", f.most_extents);
  assert_int_equal (c.ranges.len, 4);
  assert_range (&c, 0, 0, M, DATA);
  assert_range (&c, 1, 2 * T, 2 * C64, DATA);
  assert_range (&c, 2, 4 * T - C64, C64, DATA); /* split at a window end */
  assert_range (&c, 3, 4 * T, 512, DATA);
  nbd_range_vector_reset (&c.ranges);

  f.dirty = dirty;
  f.ndirty = N (dirty);
  f.calls = 0;
  walk_all (&f, C64, NBD_DEFAULT_WINDOW_SIZE, &c);
  assert_int_equal (c.ranges.len, 1);
  assert_range (&c, 0, 3 * T, 10 * C64, ZERO);
  nbd_range_vector_reset (&c.ranges);

  /* Fully allocated: one range per window, never the whole map. */
  const struct map_extent all[] = { { 0, size, 0 } };
  f = (struct fake) { .size = size, .base = all, .nbase = 1, .clip = true };
  walk_all (&f, C64, NBD_DEFAULT_WINDOW_SIZE, &c);
  assert_int_equal (c.ranges.len, 4097);
  assert_well_formed (&c, size, C64);
  normalize (&c);
  assert_int_equal (c.ranges.len, 1);
  assert_range (&c, 0, 0, size, DATA);
  nbd_range_vector_reset (&c.ranges);
}

/* ---- Errors. ---- */

static void
test_errors (void **state)
{
  struct nbd_block_extent base[] = { { C64, 0 }, { C64, HZ }, { C64, 0 } };
  struct nbd_block_extent empty[] = { { 0, 0 } };
  struct collect c = { .ranges = empty_vector };
  struct nbd_planner p;
  struct nbd_read_options o;

  /* Extents that describe nothing: an error, not an endless loop. */
  nbd_planner_init (&p, 3 * C64, C64, false, collect_range, &c);
  assert_int_equal (nbd_planner_window (&p, empty, 1, NULL, 0), -1);
  assert_int_equal (get_errno (), EPROTO);
  assert_non_null (strstr (get_error (), "no extents at offset 0"));
  assert_int_equal (nbd_planner_window (&p, base, 0, NULL, 0), -1);

  /* An incremental needs both contexts to say something. */
  nbd_planner_init (&p, 3 * C64, C64, true, collect_range, &c);
  assert_int_equal (nbd_planner_window (&p, base, 3, empty, 1), -1);

  /* The consumer's error stops the plan and is kept. */
  c.fail_after = 2;
  nbd_planner_init (&p, 3 * C64, C64, false, collect_range, &c);
  assert_int_equal (nbd_planner_window (&p, base, 3, NULL, 0), -1);
  assert_string_equal (get_error (), "consumer full: No space left on device");
  assert_int_equal (c.ranges.len, 1);
  nbd_range_vector_reset (&c.ranges);

  /* Options. */
  assert_int_equal (nbd_read_options_resolve (NULL, &o), 0);
  assert_int_equal (o.cluster_size, 65536);
  assert_int_equal (o.window_size, NBD_DEFAULT_WINDOW_SIZE);
  assert_int_equal (o.max_requests, 64);
  assert_int_equal (o.request_size, 256 * K);
  o = (struct nbd_read_options) { .cluster_size = 3000 };
  assert_int_equal (nbd_read_options_resolve (&o, &o), -1);
  assert_non_null (strstr (get_error (), "not a power of two"));
  o = (struct nbd_read_options) { .window_size = 4 * G };
  assert_int_equal (nbd_read_options_resolve (&o, &o), -1);
  assert_non_null (strstr (get_error (), "over 4 GiB - 1"));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_full_basic),
    cmocka_unit_test (test_full_zero_and_hole),
    cmocka_unit_test (test_full_unaligned),
    cmocka_unit_test (test_full_merge),
    cmocka_unit_test (test_short_last_cluster),
    cmocka_unit_test (test_incremental_basic),
    cmocka_unit_test (test_incremental_zero),
    cmocka_unit_test (test_incremental_merge),
    cmocka_unit_test (test_window_boundaries),
    cmocka_unit_test (test_server_quirks),
    cmocka_unit_test (test_random_against_reference),
    cmocka_unit_test (test_4tib),
    cmocka_unit_test (test_errors),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
