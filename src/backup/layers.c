/* SPDX-License-Identifier: Apache-2.0 */
/* layers.c: a bitmap that an external snapshot left below the active layer.
 *
 * After an external snapshot (libvirt's snapshot-create-as --disk-only,
 * QMP blockdev-snapshot) the disk's active layer is a new image.  The
 * bitmap of the last backup stays in the image below, holding the writes
 * up to the snapshot; libvirt also adds an empty bitmap of the same name
 * to the new layer, which holds only the writes after it.  The active
 * layer's bitmap alone would miss writes: the disk must be full (the
 * decision in engine.c says so, naming both layers). */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backup/internal.h"
#include "common/fs.h"
#include "common/util.h"
#include "common/error.h"
#include "qmp/qmp.h"

static bool
has_bitmap (json_t *node, const char *name)
{
  json_t *bitmaps = json_object_get (node, "dirty-bitmaps"), *b;
  size_t i;

  json_array_foreach (bitmaps, i, b)
  {
    const char *n = json_string_value (json_object_get (b, "name"));

    if (n != NULL && strcmp (n, name) == 0)
      return true;
  }
  return false;
}

/* Whether filename is one of the images below top's. */
static bool
is_below (json_t *top, const char *filename)
{
  json_t *img
    = json_object_get (json_object_get (top, "image"), "backing-image");

  for (; img != NULL; img = json_object_get (img, "backing-image")) {
    const char *f = json_string_value (json_object_get (img, "filename"));

    if (f != NULL && strcmp (f, filename) == 0)
      return true;
  }
  return false;
}

static json_t *
find_node (json_t *nodes, const char *node_name)
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

int
live_bitmap_below_why (struct qmp_client *c, const struct live_disk *d,
                       const char *name, char **why)
{
  json_t *nodes = NULL, *top, *n;
  const char *below = NULL;
  size_t i;

  *why = NULL;
  if (qmp_query_named_block_nodes (c, false, &nodes) == -1)
    return -1;
  top = find_node (nodes, d->node);
  json_array_foreach (nodes, i, n)
  {
    const char *file = json_string_value (json_object_get (n, "file"));

    if (top != NULL && n != top && file != NULL && has_bitmap (n, name)
        && is_below (top, file)) {
      below = file;
      break;
    }
  }
  if (below != NULL) {
    *why = str_printf ("bitmap %s of %s is no longer on the active layer: "
                       "a snapshot put '%s' on top of '%s', which holds "
                       "it",
                       name, d->name, d->filename, below);
    if (*why == NULL) {
      json_decref (nodes);
      return -1;
    }
  }
  json_decref (nodes);
  return 0;
}
