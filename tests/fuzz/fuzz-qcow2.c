/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-qcow2.c: fuzz target: a qcow2 image's header (probe) and its L1/L2 tables and clusters (reader).
 *
 * The input is the image file, held in a memfd.  The reader maps the
 * disk from its start (a bounded number of extents) and reads the
 * first and last bytes of each data extent. */
#include <config.h>

#include <stdlib.h>
#include <unistd.h>

#include "common/error.h"
#include "fuzz.h"
#include "qcow2/qcow2.h"

#define MAX_INPUT (1024u * 1024)
#define MAX_EXTENTS 256
#define READ_LEN 512

static void
read_extents (struct qcow2_reader *r)
{
  const struct qcow2_info *info = qcow2_reader_info (r);
  char buf[READ_LEN];
  uint64_t offset = 0;

  for (int i = 0; i < MAX_EXTENTS && offset < info->virtual_size; i++) {
    struct qcow2_extent e;

    if (qcow2_reader_map (r, offset, UINT64_MAX, &e) == -1)
      return;
    if (e.kind == QCOW2_EXTENT_DATA) {
      size_t len = e.length < READ_LEN ? e.length : READ_LEN;

      if (qcow2_reader_read (r, &e, 0, buf, len) == -1
          || qcow2_reader_read (r, &e, e.length - len, buf, len) == -1)
        return;
    }
    if (e.length == 0)
      abort (); /* the reader promised at least one cluster */
    offset = e.offset + e.length;
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct qcow2_info info;
  struct qcow2_reader *r;
  int fd;

  if (size > MAX_INPUT)
    return 0;
  fd = fuzz_memfd (data, size);
  if (qcow2_probe (fd, &info) == 0)
    qcow2_info_release (&info);
  r = qcow2_reader_new (fd);
  if (r != NULL) {
    read_extents (r);
    qcow2_reader_free (r);
  }
  close (fd);
  error_clear ();
  return 0;
}
