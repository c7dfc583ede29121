/* SPDX-License-Identifier: Apache-2.0 */
/* layers.c: a bitmap that external snapshots spread over several layers.
 *
 * After an external snapshot (knib snapshot create, libvirt's
 * snapshot-create-as --disk-only, QMP blockdev-snapshot) the disk's
 * active layer is a new image.  The bitmap of the last backup stays in
 * the image below, holding the writes up to the snapshot, and the new
 * layer has a recording bitmap of the same name (knib and libvirt both
 * add it) that holds the writes after it.  The dirty set since the
 * backup is the union of that name down the contiguous run of layers
 * that have it: it is merged into the active layer's bitmap
 * (block-dirty-bitmap-merge takes sources on other nodes).  A layer in
 * between without it (made by a tool that does not carry bitmaps) or an
 * inconsistent one below means the disk must be full. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backup/internal.h"
#include "common/fs.h"
#include "common/debug.h"
#include "common/util.h"
#include "common/error.h"
#include "qmp/qmp.h"

const char *
live_format_node_of (json_t *nodes, const char *filename)
{
  json_t *n;
  size_t i;

  json_array_foreach (nodes, i, n)
  {
    const char *f = json_string_value (json_object_get (n, "file"));
    const char *drv = json_string_value (json_object_get (n, "drv"));

    if (f != NULL && drv != NULL && strcmp (f, filename) == 0
        && strcmp (drv, "file") != 0 && strcmp (drv, "host_device") != 0)
      return json_string_value (json_object_get (n, "node-name"));
  }
  return NULL;
}

static json_t *
find_bitmap (json_t *node, const char *name)
{
  json_t *bitmaps = json_object_get (node, "dirty-bitmaps"), *b;
  size_t i;

  json_array_foreach (bitmaps, i, b)
  {
    const char *n = json_string_value (json_object_get (b, "name"));

    if (n != NULL && strcmp (n, name) == 0)
      return b;
  }
  return NULL;
}

json_t *
live_find_node (json_t *nodes, const char *node_name)
{
  json_t *n;
  size_t i;

  json_array_foreach (nodes, i, n)
  {
    const char *name = json_string_value (json_object_get (n, "node-name"));

    if (name != NULL && strcmp (name, node_name) == 0)
      return n;
  }
  return NULL;
}

/* Walk the layers below top: the nodes that hold name in a contiguous
 * run go to sources ({"node", "name"}); *why is set when the run is
 * broken or a bitmap in it is inconsistent. */
static int
collect_sources (json_t *nodes, json_t *top, const struct live_disk *d,
                 const char *name, bool top_has, json_t *sources, char **why)
{
  json_t *img
    = json_object_get (json_object_get (top, "image"), "backing-image");
  const char *gap = top_has ? NULL : d->filename;

  for (; img != NULL; img = json_object_get (img, "backing-image")) {
    const char *f = json_string_value (json_object_get (img, "filename"));
    const char *node = f ? live_format_node_of (nodes, f) : NULL;
    json_t *n = node ? live_find_node (nodes, node) : NULL;
    json_t *b = n ? find_bitmap (n, name) : NULL;

    if (b == NULL) {
      if (gap == NULL)
        gap = f ? f : "?";
      continue;
    }
    if (gap != NULL) {
      *why = str_printf ("bitmap %s of %s is in layer '%s' but not in "
                         "'%s' above it, which was made without it (by a "
                         "tool that does not carry dirty bitmaps): the "
                         "writes into that layer are not tracked",
                         name, d->name, f, gap);
      return *why ? 0 : -1;
    }
    if (json_is_true (json_object_get (b, "inconsistent"))) {
      *why = str_printf ("bitmap %s of %s in layer '%s' is inconsistent", name,
                         d->name, f);
      return *why ? 0 : -1;
    }
    if (node == NULL
        || json_array_append_new (
             sources, json_pack ("{s:s, s:s}", "node", node, "name", name))
             == -1) {
      set_error (ENOMEM, "bitmap merge");
      return -1;
    }
  }
  return 0;
}

int
live_bitmap_fold (struct qmp_client *c, const struct live_disk *d,
                  const char *name, char **why)
{
  json_t *nodes = NULL, *top, *sources = json_array (), *args;
  int r = -1;

  *why = NULL;
  if (sources == NULL) {
    set_error (ENOMEM, "bitmap merge");
    return -1;
  }
  if (qmp_query_named_block_nodes (c, false, &nodes) == -1)
    goto out;
  top = live_find_node (nodes, d->node);
  if (top == NULL) {
    r = 0;
    goto out;
  }
  if (collect_sources (nodes, top, d, name, find_bitmap (top, name) != NULL,
                       sources, why)
      == -1)
    goto out;
  /* The active layer's bitmap: live_bitmap_usable judges it. */
  if (*why != NULL || json_array_size (sources) == 0
      || !live_bitmap_usable (d, name, NULL)) {
    r = 0;
    goto out;
  }
  args = json_pack ("{s:s, s:s, s:O}", "node", d->node, "target", name,
                    "bitmaps", sources);
  if (args == NULL) {
    set_error (ENOMEM, "bitmap merge");
    goto out;
  }
  r = qmp_client_execute (c, "block-dirty-bitmap-merge", args, NULL);
  if (r == -1)
    error_prepend ("disk %s: merging bitmap %s of the layers below into "
                   "the active layer",
                   d->name, name);
  else
    debug (DEBUG_CHAIN, "disk %s: merged bitmap %s of %zu layer(s) below",
           d->name, name, json_array_size (sources));
out:
  json_decref (sources);
  json_decref (nodes);
  return r;
}
