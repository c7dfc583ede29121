/* SPDX-License-Identifier: Apache-2.0 */
/* source.c: connect to an export, negotiate its contexts, ask block status. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

/* An extra connection that does not finish its handshake in this long is
 * given up (qemu-nbd without --shared accepts one client at a time). */
#define EXTRA_CONNECT_TIMEOUT_MS 5000

/* How long a disconnect waits for the server to close its end. */
#define DISCONNECT_TIMEOUT_MS 1000

void
nbd_error_set (int errnum, const char *msg)
{
  const char *tail = errnum ? strerror (errnum) : "";
  size_t n = strlen (msg), m = strlen (tail);

  /* Do not say strerror (errnum) twice. */
  if (errnum && n > m + 2 && strcmp (msg + n - m, tail) == 0
      && strncmp (msg + n - m - 2, ": ", 2) == 0)
    set_error (errnum, "%.*s", (int) (n - m - 2), msg);
  else
    set_error (-errnum, "%s", msg);
}

void
nbd_error_from_libnbd (const char *fmt, ...)
{
  va_list ap;
  CLEANUP_FREE char *ctx = NULL;
  CLEANUP_FREE char *msg = NULL;
  const char *lmsg = nbd_get_error ();
  int errnum = nbd_get_errno ();

  va_start (ap, fmt);
  if (vasprintf (&ctx, fmt, ap) == -1)
    ctx = NULL;
  va_end (ap);
  if (asprintf (&msg, "%s: %s", ctx ? ctx : "nbd",
                lmsg ? lmsg : "unknown libnbd error")
      == -1) {
    set_error (ENOMEM, "nbd");
    return;
  }
  nbd_error_set (errnum ? errnum : EIO, msg);
}

/* How long one poll may last while a cancel flag is watched. */
#define CANCEL_SLICE_MS 250

/* Wait until h finishes connecting.  -1: libnbd's error says why;
 * -2: set_error does (ETIMEDOUT, EINTR when cancel was set, or the
 * server hung up). */
static int
handle_wait_connected (struct nbd_handle *h, int timeout_ms,
                       volatile sig_atomic_t *cancel)
{
  int64_t deadline = deadline_after_ms (timeout_ms > 0 ? timeout_ms : -1);
  int r, left;

  while (nbd_aio_is_connecting (h)) {
    if (cancel != NULL && *cancel != 0) {
      set_error (-EINTR, "interrupted");
      return -2;
    }
    left = deadline_remaining_ms (deadline);
    if (cancel != NULL && (left < 0 || left > CANCEL_SLICE_MS))
      left = CANCEL_SLICE_MS;
    r = nbd_poll (h, left);
    if (r == -1)
      return -1;
    if (r == 0 && deadline_remaining_ms (deadline) == 0) {
      set_error (ETIMEDOUT, "no handshake within %.1f s", timeout_ms / 1000.0);
      return -2;
    }
  }
  if (!nbd_aio_is_ready (h)) {
    set_error (ECONNRESET, "the server closed the connection");
    return -2;
  }
  return 0;
}

/* Open one connection to s's export (with meta contexts if meta). */
static struct nbd_handle *
source_open_handle (struct nbd_source *s, bool meta, int timeout_ms)
{
  struct nbd_handle *h;
  int r;

  h = nbd_create ();
  if (h == NULL) {
    nbd_error_from_libnbd ("nbd");
    return NULL;
  }
  if (nbd_set_export_name (h, s->export_name) == -1
      || nbd_set_pread_initialize (h, false) == -1
      || (meta && nbd_add_meta_context (h, NBD_CONTEXT_ALLOCATION) == -1)
      || (meta && s->bitmap_context
          && nbd_add_meta_context (h, s->bitmap_context) == -1)
      || nbd_aio_connect_unix (h, s->socket) == -1) {
    nbd_error_from_libnbd ("nbd connect to '%s'", s->socket);
    nbd_close (h);
    return NULL;
  }
  r = handle_wait_connected (h, timeout_ms, s->cancel);
  if (r < 0) {
    if (r == -1)
      nbd_error_from_libnbd ("nbd connect to '%s' export '%s'", s->socket,
                             s->export_name);
    else
      error_prepend ("nbd connect to '%s' export '%s'", s->socket,
                     s->export_name);
    nbd_close (h);
    return NULL;
  }
  return h;
}

static uint32_t
block_size_or (struct nbd_handle *h, int which, uint32_t dflt)
{
  int64_t r = nbd_get_block_size (h, which);

  return r > 0 && r <= UINT32_MAX ? (uint32_t) r : dflt;
}

/* Read what the handshake told us from the first connection. */
static int
source_learn (struct nbd_source *s)
{
  struct nbd_handle *h = s->h[0];
  int64_t size;
  int r;

  size = nbd_get_size (h);
  if (size == -1) {
    nbd_error_from_libnbd ("nbd export '%s'", s->export_name);
    return -1;
  }
  s->size = size;
  s->min_block = block_size_or (h, LIBNBD_SIZE_MINIMUM, 1);
  s->preferred_block = block_size_or (h, LIBNBD_SIZE_PREFERRED, 4096);
  s->max_block = block_size_or (h, LIBNBD_SIZE_MAXIMUM, 32 * 1024 * 1024);
  s->has_allocation = nbd_can_meta_context (h, NBD_CONTEXT_ALLOCATION) == 1;
  s->multi_conn = nbd_can_multi_conn (h) == 1;

  if (s->bitmap_context) {
    r = nbd_can_meta_context (h, s->bitmap_context);
    if (r != 1) {
      set_error (
        0,
        "export '%s' does not expose dirty bitmap '%s' (add it to the export: block-export-add \"bitmaps\", qemu-nbd -B)",
        s->export_name, s->bitmap);
      errno = ENOENT;
      return -1;
    }
  }
  debug (DEBUG_NBD,
         "connected to '%s' export '%s': size %" PRIu64 ", block sizes %" PRIu32
         "/%" PRIu32 "/%" PRIu32 ", base:allocation %s, multi-conn %s%s%s",
         s->socket, s->export_name, s->size, s->min_block, s->preferred_block,
         s->max_block, s->has_allocation ? "yes" : "no",
         s->multi_conn ? "yes" : "no", s->bitmap_context ? ", " : "",
         s->bitmap_context ? s->bitmap_context : "");
  return 0;
}

/* Open more connections for reads, as far as the server lets us. */
static void
source_open_extra (struct nbd_source *s, unsigned wanted)
{
  struct nbd_handle *h;

  if (wanted > NBD_MAX_CONNECTIONS)
    wanted = NBD_MAX_CONNECTIONS;
  if (wanted > 1 && !s->multi_conn) {
    debug (DEBUG_NBD, "export '%s' does not allow multi-conn: one connection",
           s->export_name);
    return;
  }
  while (s->nr_conns < wanted) {
    h = source_open_handle (s, false, EXTRA_CONNECT_TIMEOUT_MS);
    if (h == NULL) {
      debug (DEBUG_NBD, "using %u connections: %s", s->nr_conns, get_error ());
      error_clear ();
      return;
    }
    s->h[s->nr_conns++] = h;
  }
}

struct nbd_source *
nbd_source_connect (const struct nbd_source_options *o)
{
  struct nbd_source *s;
  const char *export_name = o->export_name ? o->export_name : "";

  s = calloc (1, sizeof *s);
  if (s == NULL) {
    set_error (errno, "nbd");
    return NULL;
  }
  s->socket = strdup (o->socket);
  s->export_name = strdup (export_name);
  s->cancel = o->cancel;
  if (o->bitmap) {
    s->bitmap = strdup (o->bitmap);
    if (asprintf (&s->bitmap_context, "%s%s", NBD_CONTEXT_BITMAP_PREFIX,
                  o->bitmap)
        == -1)
      s->bitmap_context = NULL;
  }
  if (s->socket == NULL || s->export_name == NULL
      || (o->bitmap && (s->bitmap == NULL || s->bitmap_context == NULL))) {
    set_error (ENOMEM, "nbd");
    nbd_source_free (s);
    return NULL;
  }

  s->h[0] = source_open_handle (s, true, o->timeout_ms);
  if (s->h[0] == NULL) {
    nbd_source_free (s);
    return NULL;
  }
  s->nr_conns = 1;
  if (source_learn (s) == -1) {
    nbd_source_free (s);
    return NULL;
  }
  source_open_extra (s, o->connections);
  return s;
}

/* Say goodbye to the server when the connection is idle (QEMU logs a
 * client that just goes away), without waiting long for its answer. */
static void
handle_disconnect (struct nbd_handle *h)
{
  int64_t deadline = deadline_after_ms (DISCONNECT_TIMEOUT_MS);

  if (!nbd_aio_is_ready (h) || nbd_aio_in_flight (h) != 0
      || nbd_aio_disconnect (h, 0) == -1)
    return;
  while (!nbd_aio_is_closed (h) && !nbd_aio_is_dead (h)
         && deadline_remaining_ms (deadline) > 0)
    if (nbd_poll (h, deadline_remaining_ms (deadline)) == -1)
      return;
}

void
nbd_source_free (struct nbd_source *s)
{
  unsigned i;

  if (s == NULL)
    return;
  for (i = 0; i < NBD_MAX_CONNECTIONS; i++) {
    if (s->h[i])
      handle_disconnect (s->h[i]);
    nbd_close (s->h[i]);
  }
  free (s->socket);
  free (s->export_name);
  free (s->bitmap);
  free (s->bitmap_context);
  free (s);
}

uint64_t
nbd_source_size (const struct nbd_source *s)
{
  return s->size;
}

void
nbd_source_block_size (const struct nbd_source *s, uint32_t *minimum,
                       uint32_t *preferred, uint32_t *maximum)
{
  if (minimum)
    *minimum = s->min_block;
  if (preferred)
    *preferred = s->preferred_block;
  if (maximum)
    *maximum = s->max_block;
}

unsigned
nbd_source_connections (const struct nbd_source *s)
{
  return s->nr_conns;
}

bool
nbd_source_incremental (const struct nbd_source *s)
{
  return s->bitmap != NULL;
}

bool
nbd_source_alive (struct nbd_source *s, unsigned i)
{
  return s->h[i] && !nbd_aio_is_dead (s->h[i]) && !nbd_aio_is_closed (s->h[i]);
}

unsigned
nbd_source_in_flight (struct nbd_source *s, unsigned i)
{
  int r;

  if (s->h[i] == NULL)
    return 0;
  r = nbd_aio_in_flight (s->h[i]);
  return r > 0 ? (unsigned) r : 0;
}

unsigned
nbd_source_in_flight_all (struct nbd_source *s)
{
  unsigned i, n = 0;

  for (i = 0; i < s->nr_conns; i++)
    n += nbd_source_in_flight (s, i);
  return n;
}

void
nbd_source_close_all (struct nbd_source *s)
{
  unsigned i;

  for (i = 0; i < s->nr_conns; i++) {
    nbd_close (s->h[i]);
    s->h[i] = NULL;
  }
  s->broken = true;
}

/* Let connection i act on what poll saw. */
static int
source_notify (struct nbd_source *s, unsigned i, short revents)
{
  struct nbd_handle *h = s->h[i];
  unsigned dir = nbd_aio_get_direction (h);
  int r = 0;

  if ((dir & LIBNBD_AIO_DIRECTION_READ) && (revents & (POLLIN | POLLHUP)))
    r = nbd_aio_notify_read (h);
  else if ((dir & LIBNBD_AIO_DIRECTION_WRITE)
           && (revents & (POLLOUT | POLLHUP | POLLERR)))
    r = nbd_aio_notify_write (h);
  else if (revents & POLLERR)
    r = nbd_aio_notify_read (h);
  if (r == -1 || nbd_aio_is_dead (h) || nbd_aio_is_closed (h)) {
    /* A handle that died without a failing call here (the server hung
     * up, as QEMU's does when its read of the disk fails, and another
     * thread's call saw it) left no message on this thread: say what
     * happened rather than libnbd's last, unrelated, error. */
    if ((r != -1 || nbd_get_error () == NULL) && s->nr_conns > 1)
      set_error (ENOTCONN, "connection %u: %s", i, NBD_LOST_CONNECTION);
    else if (r != -1 || nbd_get_error () == NULL)
      set_error (ENOTCONN, "%s", NBD_LOST_CONNECTION);
    else if (s->nr_conns > 1)
      nbd_error_from_libnbd ("connection %u", i);
    else
      nbd_error_set (nbd_get_errno () ? nbd_get_errno () : EIO,
                     nbd_get_error ());
    s->broken = true;
    return -1;
  }
  return 0;
}

int
nbd_source_wait (struct nbd_source *s, int timeout_ms)
{
  struct pollfd fds[NBD_MAX_CONNECTIONS];
  unsigned idx[NBD_MAX_CONNECTIONS];
  unsigned i, n = 0, dir;
  int r, fd;

  for (i = 0; i < s->nr_conns; i++) {
    if (nbd_source_in_flight (s, i) == 0)
      continue;
    fd = nbd_aio_get_fd (s->h[i]);
    if (fd == -1) {
      nbd_error_from_libnbd ("connection %u", i);
      s->broken = true;
      return -1;
    }
    dir = nbd_aio_get_direction (s->h[i]);
    fds[n] = (struct pollfd) {
      .fd = fd,
      .events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0)
                | ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0),
    };
    idx[n++] = i;
  }
  if (n == 0) {
    /* Callers wait for a command: without one nothing would wake us. */
    set_error (ENOTCONN, "no command in flight");
    s->broken = true;
    return -1;
  }

  r = poll (fds, n, timeout_ms > 0 ? timeout_ms : -1);
  if (r == -1) {
    if (errno == EINTR)
      return 0;
    set_error (errno, "poll");
    return -1;
  }
  if (r == 0) {
    set_error (ETIMEDOUT, "no reply from the server within %.1f s",
               timeout_ms / 1000.0);
    nbd_source_close_all (s);
    return -1;
  }
  for (i = 0; i < n; i++)
    if (fds[i].revents && source_notify (s, idx[i], fds[i].revents) == -1)
      return -1;
  return 0;
}

/* One block status command in flight. */
struct status_call {
  const char *bitmap_context;
  nbd_block_extent_vector *base;
  nbd_block_extent_vector *dirty;
  bool done;
  int err;
};

static int
status_extents (void *opaque, const char *context, uint64_t offset,
                uint32_t *entries, size_t nr_entries, int *error)
{
  struct status_call *call = opaque;
  nbd_block_extent_vector *v;
  size_t i;

  if (strcmp (context, NBD_CONTEXT_ALLOCATION) == 0)
    v = call->base;
  else if (call->bitmap_context && strcmp (context, call->bitmap_context) == 0)
    v = call->dirty;
  else
    return 0;
  if (nbd_block_extent_vector_reserve (v, nr_entries / 2) == -1) {
    *error = ENOMEM;
    return -1;
  }
  for (i = 0; i + 1 < nr_entries; i += 2)
    v->ptr[v->len++] = (struct nbd_block_extent) {
      .length = entries[i],
      .flags = entries[i + 1],
    };
  return 0;
}

/* As copy_read_done: the caller retires the command. */
static int
status_done (void *opaque, int *error)
{
  struct status_call *call = opaque;

  call->done = true;
  call->err = *error;
  return 0;
}

/* The next window's block status, asked before it is needed. */
struct status_prefetch {
  struct status_call call;
  nbd_block_extent_vector base, dirty;
  uint64_t offset, count;
  int64_t cookie;
};

/* Send the block status of [offset, offset + count) on the first
 * connection, its answer going to call. */
static int64_t
status_send (struct nbd_source *s, uint64_t offset, uint64_t count,
             struct status_call *call)
{
  nbd_extent_callback ecb = { .callback = status_extents, .user_data = call };
  nbd_completion_callback ccb = { .callback = status_done, .user_data = call };

  return nbd_aio_block_status (s->h[0], count, offset, ecb, ccb, 0);
}

/* Wait for the answer to call (sent as cookie), retire it and say how it
 * went. */
static int
status_wait (struct nbd_status_ctx *ctx, uint64_t offset,
             struct status_call *call, int64_t cookie)
{
  struct nbd_source *s = ctx->s;

  while (!call->done) {
    if (nbd_source_wait (s, ctx->timeout_ms) == -1) {
      error_prepend ("nbd block status at %" PRIu64, offset);
      return -1;
    }
    if (!call->done && ctx->cancel != NULL && *ctx->cancel != 0) {
      /* Closing retires the command, which refers to call. */
      nbd_source_close_all (s);
      set_error (EINTR, "nbd block status at %" PRIu64 ": interrupted", offset);
      return -1;
    }
  }
  if (s->h[0])
    (void) nbd_aio_command_completed (s->h[0], cookie);
  if (call->err == ENOTCONN) {
    set_error (ENOTCONN, "nbd block status at %" PRIu64 ": %s", offset,
               NBD_LOST_CONNECTION);
    return -1;
  }
  if (call->err) {
    set_error (call->err, "nbd block status at %" PRIu64, offset);
    debug (DEBUG_NBD, "%s", get_error ());
    return -1;
  }
  return 0;
}

static void
swap_vectors (nbd_block_extent_vector *a, nbd_block_extent_vector *b)
{
  nbd_block_extent_vector t = *a;

  *a = *b;
  *b = t;
}

/* The oldest prefetched answer. */
static struct status_prefetch *
pf_head (struct nbd_status_ctx *ctx)
{
  return &ctx->pf[ctx->pf_head];
}

static void
pf_pop (struct nbd_status_ctx *ctx)
{
  ctx->pf_head = (ctx->pf_head + 1) % NBD_STATUS_PREFETCH;
  ctx->pf_count--;
}

/* Wait for every prefetch and drop the answers (a plan that went
 * another way).  Errors are the next request's to report. */
static void
status_drop_prefetches (struct nbd_status_ctx *ctx)
{
  struct error_saved err;

  error_save (&err);
  while (ctx->pf_count > 0) {
    struct status_prefetch *pf = pf_head (ctx);

    if (status_wait (ctx, pf->offset, &pf->call, pf->cookie) == -1
        && !pf->call.done) {
      /* Its answer must not land in memory that is reused. */
      nbd_source_close_all (ctx->s);
    }
    ctx->misses++;
    pf_pop (ctx);
  }
  error_restore (&err);
}

/* The prefetched answer, when it is the one asked for: 1 when it was
 * used (base and dirty hold it), 0 when there is none (prefetches of
 * other windows are waited for and dropped), -1 on error. */
static int
status_take_prefetch (struct nbd_status_ctx *ctx, uint64_t offset,
                      uint64_t count, nbd_block_extent_vector *base,
                      nbd_block_extent_vector *dirty)
{
  struct status_prefetch *pf;
  int r;

  if (ctx->pf_count == 0)
    return 0;
  pf = pf_head (ctx);
  if (pf->offset != offset || pf->count != count) {
    status_drop_prefetches (ctx);
    return 0;
  }
  r = status_wait (ctx, pf->offset, &pf->call, pf->cookie);
  pf_pop (ctx);
  if (r == -1)
    return -1;
  ctx->hits++;
  swap_vectors (base, &pf->base);
  swap_vectors (dirty, &pf->dirty);
  return 1;
}

/* Keep the windows after [offset, offset + count) asked for, up to
 * NBD_STATUS_PREFETCH of them. */
static void
status_prefetch (struct nbd_status_ctx *ctx, uint64_t offset, uint64_t count)
{
  struct nbd_source *s = ctx->s;
  uint64_t next = offset + count;

  if (!ctx->prefetch)
    return;
  if (ctx->pf == NULL
      && (ctx->pf = calloc (NBD_STATUS_PREFETCH, sizeof *ctx->pf)) == NULL)
    return; /* no prefetch: each window is asked when it is needed */
  if (ctx->pf_count > 0) {
    const struct status_prefetch *last
      = &ctx->pf[(ctx->pf_head + ctx->pf_count - 1) % NBD_STATUS_PREFETCH];

    next = last->offset + last->count;
  }
  while (ctx->pf_count < NBD_STATUS_PREFETCH && next < s->size && !s->broken
         && s->h[0] != NULL) {
    struct status_prefetch *pf
      = &ctx->pf[(ctx->pf_head + ctx->pf_count) % NBD_STATUS_PREFETCH];

    pf->base.len = pf->dirty.len = 0;
    pf->call = (struct status_call) {
      .bitmap_context = s->bitmap_context,
      .base = &pf->base,
      .dirty = &pf->dirty,
    };
    pf->offset = next;
    pf->count = count < s->size - next ? count : s->size - next;
    pf->cookie = status_send (s, next, pf->count, &pf->call);
    if (pf->cookie == -1)
      return;
    ctx->pf_count++;
    next += pf->count;
  }
}

void
nbd_status_ctx_release (struct nbd_status_ctx *ctx)
{
  unsigned i;

  if (ctx->pf == NULL)
    return;
  status_drop_prefetches (ctx);
  debug (DEBUG_NBD,
         "block status: %" PRIu64 " window(s) prefetched in time, %" PRIu64
         " not used",
         ctx->hits, ctx->misses);
  for (i = 0; i < NBD_STATUS_PREFETCH; i++) {
    nbd_block_extent_vector_reset (&ctx->pf[i].base);
    nbd_block_extent_vector_reset (&ctx->pf[i].dirty);
  }
  free (ctx->pf);
  ctx->pf = NULL;
}

int
nbd_source_block_status (void *opaque, uint64_t offset, uint64_t count,
                         nbd_block_extent_vector *base,
                         nbd_block_extent_vector *dirty)
{
  struct nbd_status_ctx *ctx = opaque;
  struct nbd_source *s = ctx->s;
  struct status_call call = {
    .bitmap_context = s->bitmap_context,
    .base = base,
    .dirty = dirty,
  };
  int64_t cookie;
  int r;

  if (s->broken) {
    set_error (ENOTCONN,
               "nbd block status at %" PRIu64 ": the connection failed earlier",
               offset);
    return -1;
  }
  /* Without base:allocation everything may hold data. */
  if (!s->has_allocation) {
    if (nbd_block_extent_vector_append (
          base, (struct nbd_block_extent) { .length = count })
        == -1) {
      set_error (ENOMEM, "nbd block status");
      return -1;
    }
    if (s->bitmap_context == NULL)
      return 0;
  }

  r = s->has_allocation ? status_take_prefetch (ctx, offset, count, base, dirty)
                        : 0;
  if (r == -1)
    return -1;
  if (r == 0) {
    cookie = status_send (s, offset, count, &call);
    if (cookie == -1) {
      nbd_error_from_libnbd ("nbd block status at %" PRIu64, offset);
      return -1;
    }
    if (status_wait (ctx, offset, &call, cookie) == -1)
      return -1;
  }
  if (s->has_allocation)
    status_prefetch (ctx, offset, count);
  return 0;
}

int
nbd_source_plan (struct nbd_source *s, const struct nbd_read_options *o,
                 nbd_range_fn fn, void *opaque)
{
  struct nbd_read_options opts;
  struct nbd_status_ctx ctx = { .s = s };
  struct nbd_walk walk;
  int r;

  if (nbd_read_options_resolve (o, &opts) == -1)
    return -1;
  ctx.timeout_ms = opts.timeout_ms;
  ctx.cancel = opts.cancel;
  nbd_walk_init (&walk, s->size, opts.cluster_size, opts.window_size,
                 s->bitmap != NULL, nbd_source_block_status, &ctx, fn, opaque);
  while ((r = nbd_walk_step (&walk)) == 1)
    ;
  nbd_walk_release (&walk);
  return r;
}
