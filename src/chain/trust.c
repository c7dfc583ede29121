/* SPDX-License-Identifier: Apache-2.0 */
/* trust.c: what a backup's images must pass before knib reads them back. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

int
chain_image_check_hash (const char *path, const struct chain_disk *disk)
{
  char hex[CHAIN_HASH_HEX_LEN + 1];

  if (chain_hash_file (path, disk->hash_kind, hex) == -1)
    return -1;
  if (strcmp (hex, disk->hash) != 0) {
    set_error (-EBADMSG,
               "image '%s' has %s %s but the manifest records %s: the image "
               "changed after the backup",
               path, chain_hash_kind_name (disk->hash_kind), hex, disk->hash);
    return -1;
  }
  return 0;
}

int
chain_disk_check (struct chain_repo *repo, const chain_manifest_vector *chain,
                  const char *name, bool hashes)
{
  chain_string_vector errors = empty_vector, warnings = empty_vector;
  size_t i = chain->len;
  int ret = -1;

  while (i-- > 0) {
    const struct chain_manifest *m = chain->ptr[i];
    const struct chain_manifest *parent = i > 0 ? chain->ptr[i - 1] : NULL;
    const struct chain_disk *disk = chain_manifest_find_disk (m, name);
    CLEANUP_FREE char *path = NULL;
    CLEANUP_FREE char *expected = NULL;
    bool readable;

    if (disk == NULL) {
      set_error (-EINVAL, "backup '%s' has no disk '%s'", m->id, name);
      goto out;
    }
    path = chain_backup_image_path (repo, m, disk);
    if (path == NULL)
      goto out;
    if (chain_disk_expected_backing (parent, disk, &expected) == -1) {
      error_prepend ("backup '%s'", m->id);
      goto out;
    }
    if (chain_image_check_header (path, disk, expected, &errors, &warnings,
                                  &readable)
        == -1)
      goto out;
    if (errors.len > 0) {
      set_error (-EINVAL, "%s", errors.ptr[0]);
      goto out;
    }
    if (hashes && chain_image_check_hash (path, disk) == -1)
      goto out;
    if (disk->kind != CHAIN_KIND_INCREMENTAL)
      break;
  }
  ret = 0;
out:
  chain_string_vector_release (&errors);
  chain_string_vector_release (&warnings);
  return ret;
}

/* {"driver": "qcow2", "file": {"driver": "file", "filename": path},
 * "backing": ...} for the disk's image in chain->ptr[i] and down. */
static json_t *
qemu_node (struct chain_repo *repo, const chain_manifest_vector *chain,
           size_t i, const char *name)
{
  const struct chain_disk *disk
    = chain_manifest_find_disk (chain->ptr[i], name);
  CLEANUP_FREE char *path = NULL;
  json_t *backing;

  if (disk == NULL) {
    set_error (-EINVAL, "backup '%s' has no disk '%s'", chain->ptr[i]->id,
               name);
    return NULL;
  }
  path = chain_backup_image_path (repo, chain->ptr[i], disk);
  if (path == NULL)
    return NULL;
  if (disk->kind == CHAIN_KIND_INCREMENTAL && i > 0)
    backing = qemu_node (repo, chain, i - 1, name);
  else
    backing = json_null ();
  if (backing == NULL)
    return NULL;
  return json_pack ("{s:s, s:b, s:{s:s, s:s}, s:o}", "driver", "qcow2",
                    "read-only", 1, "file", "driver", "file", "filename", path,
                    "backing", backing);
}

char *
chain_disk_qemu_json (struct chain_repo *repo,
                      const chain_manifest_vector *chain, const char *name)
{
  json_t *node;
  char *text;

  if (chain->len == 0) {
    set_error (EINVAL, "an empty chain");
    return NULL;
  }
  node = qemu_node (repo, chain, chain->len - 1, name);
  if (node == NULL) {
    if (get_errno () == 0)
      set_error (ENOMEM, "the image's options for QEMU");
    return NULL;
  }
  text = json_dumps (node, JSON_COMPACT);
  json_decref (node);
  if (text == NULL)
    set_error (ENOMEM, "the image's options for QEMU");
  return text;
}

char *
chain_disk_qemu_spec (struct chain_repo *repo,
                      const chain_manifest_vector *chain, const char *name)
{
  CLEANUP_FREE char *text = chain_disk_qemu_json (repo, chain, name);

  return text ? str_printf ("json:%s", text) : NULL;
}
